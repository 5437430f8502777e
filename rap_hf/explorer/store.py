"""`ExplorerStore`: the data every visitor opens on, and memoised selections of any visitor's data.

A visitor's own dataset lives in their session (`rap_hf.explorer.visitors.VisitorSession`, a `gr.State`), not
here: one visitor's load can never evict another's. The store only remembers recent selections per dataset
(weakly: a visitor's dataset and its selections go together).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

from rap_hf.config import RAPSelectionConfig
from rap_hf.explorer.data import ExplorerData
from rap_hf.explorer.reselection import Selection, run_selection, selection_key


class ExplorerStore:
    """The opening data (shared, read-only) and a few memoised selections per dataset.

    Selections are memoised per (dataset, selection fields), so the table, the sample view and a download
    after a slider move do not select again.
    """

    def __init__(self, default: ExplorerData, max_selections: int = 16) -> None:
        self.default = default
        self._selections: weakref.WeakKeyDictionary[ExplorerData, OrderedDict[tuple, Selection]] = (
            weakref.WeakKeyDictionary()
        )
        self._max_selections = max_selections
        self._lock = threading.Lock()

    def selection(self, data: ExplorerData, config: RAPSelectionConfig) -> Selection:
        """The selection of `data` with `config`, memoised by its selection fields."""
        memo = selection_key(config)
        with self._lock:
            cached = self._selections.get(data, {}).get(memo)
        if cached is not None:
            return cached
        result = run_selection(data, config)
        with self._lock:
            recent = self._selections.setdefault(data, OrderedDict())
            recent[memo] = result
            while len(recent) > self._max_selections:
                recent.popitem(last=False)
        return result
