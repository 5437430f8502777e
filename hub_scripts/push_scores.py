"""Push a scored dataset to the Hub: configs `selected` (default) and `scores`, dataset card and figures.

Same as `rap-hf push`; every flag can also come from a YAML file with `--config`.

    python hub_scripts/push_scores.py --scores rap_outputs/scores --repo_id ORG/NAME [--private] [--lambda_c 0.5]

The token comes from huggingface_hub's usual sources (`hf auth login` or the HF_TOKEN environment variable).
"""

from __future__ import annotations

import sys

from rap_hf.cli import main


def run(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the command line) as `rap-hf push` flags and push."""
    return main(["push", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(run())
