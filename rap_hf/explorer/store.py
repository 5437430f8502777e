"""`ExplorerStore`: the datasets an app has loaded and their recent selections, shared by all sessions."""

from __future__ import annotations

import threading
from collections import OrderedDict

from rap_hf.config import RAPSelectionConfig
from rap_hf.explorer.data import ExplorerData, ExplorerDataError
from rap_hf.explorer.reselection import Selection, run_selection, selection_key


class ExplorerStore:
    """The datasets an app has loaded (by key) and recent selections, shared by all sessions.

    Sessions keep only a key in their state: Gradio deep-copies state values, and a dataset with images
    should be loaded once, not copied per visitor. Selections are memoised per (dataset, selection fields),
    so the table, the sample view and a download after a slider move do not select again.
    """

    def __init__(self, max_datasets: int = 4, max_selections: int = 32) -> None:
        self._data: OrderedDict[str, ExplorerData] = OrderedDict()
        self._pinned: set[str] = set()
        self._selections: OrderedDict[tuple, Selection] = OrderedDict()
        self._max_datasets = max_datasets
        self._max_selections = max_selections
        self._lock = threading.Lock()

    def put(self, key: str, data: ExplorerData, *, pinned: bool = False) -> str:
        """Keep `data` under `key` (pinned: never evicted); the least recently used unpinned dataset, and its
        selections, go when more than `max_datasets` are held. Returns `key`."""
        with self._lock:
            self._data[key] = data
            self._data.move_to_end(key)
            if pinned:
                self._pinned.add(key)
            while len(self._data) > self._max_datasets:
                oldest = next((k for k in self._data if k not in self._pinned), None)
                if oldest is None:
                    break
                del self._data[oldest]
                for memo in [k for k in self._selections if k[0] == oldest]:
                    del self._selections[memo]
        return key

    def get(self, key: str | None) -> ExplorerData:
        """The dataset under `key`; `ExplorerDataError` when it was never loaded or has been evicted."""
        with self._lock:
            if key is None or key not in self._data:
                raise ExplorerDataError("No dataset loaded (it may have been unloaded): load one again.")
            self._data.move_to_end(key)
            return self._data[key]

    def selection(self, key: str, config: RAPSelectionConfig) -> Selection:
        """The selection of the dataset under `key` with `config`, memoised by its selection fields."""
        data = self.get(key)
        memo = (key, *selection_key(config))
        with self._lock:
            cached = self._selections.get(memo)
        if cached is not None:
            return cached
        result = run_selection(data, config)
        with self._lock:
            self._selections[memo] = result
            while len(self._selections) > self._max_selections:
                self._selections.popitem(last=False)
        return result
