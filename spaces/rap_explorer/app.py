"""Hugging Face Space entry point of the RAP Score Explorer (a Space runs `python app.py`).

All logic lives in the `rap_hf` package (`rap_hf.explorer`, `rap_hf.explorer.app`); this file only reads the
environment and launches. Locally, `rap-hf explore [--dataset PATH_OR_REPO_ID]` does the same.

Environment (all optional): RAP_EXPLORER_DATASET (a Hub id or path to open on; default: the shipped
visual-arith scores), RAP_EXPLORER_SPLIT (default train), RAP_EXPLORER_MODEL ("reference", a model folder,
or "none"), RAP_EXPLORER_MAX_DOWNLOAD_MB (the largest dataset split a visitor may load; default 100),
RAP_EXPLORER_ALLOW_PUSH=1 with RAP_EXPLORER_PUSH_NAMESPACE=NS (the push button: visitors create new repos
in NS only, with the Space's HF_TOKEN secret). What the public Space promises: SECURITY.md.
"""

import os
import sys
from pathlib import Path

# Before gradio is imported anywhere: no usage statistics leave the Space.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

try:
    import rap_hf  # noqa: F401  (installed, or uploaded next to this file)
except ImportError:
    # Running from a checkout without `pip install -e .`: the package is two folders up.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from rap_hf.explorer.app import launch_explorer  # noqa: E402
from rap_hf.explorer.limits import ExplorerLimits  # noqa: E402

if __name__ == "__main__":
    model = os.environ.get("RAP_EXPLORER_MODEL", "reference")
    launch_explorer(
        os.environ.get("RAP_EXPLORER_DATASET") or None,
        split=os.environ.get("RAP_EXPLORER_SPLIT", "train"),
        model=None if model == "none" else model,
        allow_push=os.environ.get("RAP_EXPLORER_ALLOW_PUSH") == "1",
        push_namespace=os.environ.get("RAP_EXPLORER_PUSH_NAMESPACE") or None,
        limits=ExplorerLimits(max_download_mb=float(os.environ.get("RAP_EXPLORER_MAX_DOWNLOAD_MB", "100"))),
    )
