"""What one visitor's page holds on the server: `VisitorSession`, kept in the visitor's own `gr.State`.

A session holds the dataset the visitor loaded (None: the opening data everyone shares) and their latest
selection download, in a folder of their own under the app's temp folder. Nothing in it is shared, so one
visitor's load can never evict another's data. Gradio drops a session's state an hour after its tab closes
(or `ExplorerLimits.session_ttl_s` after it was last changed) and calls `VisitorSession.close`; a session
dropped any other way (Gradio's session cap) is cleaned up when it is garbage-collected.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from rap_hf.explorer.data import ExplorerData


class VisitorSession:
    """One visitor's dataset (None: the opening data) and download folder."""

    def __init__(self, root: str | Path) -> None:
        """`root`: the app's folder for visitors; this session's folder is made inside it on first use."""
        self.root = Path(root)
        self.data: ExplorerData | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._download: Path | None = None

    @property
    def folder(self) -> Path:
        """This visitor's own folder (removed by `close`, or when the session is garbage-collected)."""
        if self._folder is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._folder = tempfile.TemporaryDirectory(prefix="visitor-", dir=self.root)
        return Path(self._folder.name)

    def download_folder(self) -> Path:
        """A fresh folder for a download; the previous download is removed first (Gradio has already copied it
        to its own cache, which it cleans with `delete_cache`), so a visitor holds at most one."""
        if self._download is not None:
            shutil.rmtree(self._download, ignore_errors=True)
        self._download = Path(tempfile.mkdtemp(prefix="download-", dir=self.folder))
        return self._download

    def close(self) -> None:
        """Drop the dataset (its files and disk budget go with it) and remove the folder."""
        self.data = None
        self._download = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def close_session(session: VisitorSession | None) -> None:
    """`gr.State`'s delete callback."""
    if session is not None:
        session.close()
