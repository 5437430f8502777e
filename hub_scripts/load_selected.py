"""Load the RAP-selected subset of a Hub dataset (config `selected`) and optionally save it to disk.

    python hub_scripts/load_selected.py --repo_id ORG/NAME [--split NAME] [--revision REV] [--output DIR]

Without `--split`, every split is loaded (one split is saved as a `Dataset`, several as a `DatasetDict`).
`--repo_id` may also be a local folder laid out like the repo. The library call is one line:
`rap_hf.hub.load_selected(repo_id, split=...)`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from datasets import DatasetDict

from rap_hf.hub import load_selected


@dataclass
class LoadSelectedArguments:
    """Arguments of `load_selected.py`."""

    repo_id: str = field(metadata={"help": "Dataset repo on the Hub (ORG/NAME) or a local folder like it."})
    split: str | None = field(default=None, metadata={"help": "Split to load (default: every split)."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit (default: main)."})
    output: str | None = field(default=None, metadata={"help": "Save the subset here (save_to_disk format)."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "datasets cache folder (default: HF cache)."}
    )


def main(args: LoadSelectedArguments) -> int:
    """Load the subset, print a summary, save it when `--output` is given."""
    subset = load_selected(args.repo_id, split=args.split, revision=args.revision, cache_dir=args.cache_dir)
    parts = subset.items() if isinstance(subset, DatasetDict) else [(args.split or "", subset)]
    for name, part in parts:
        label = f"selected/{name}" if name else "selected"
        print(f"{args.repo_id} [{label}]: {len(part)} rows; columns: {', '.join(part.column_names)}")
    if args.output:
        subset.save_to_disk(args.output)
        print(f"saved to {args.output}")
    return 0


if __name__ == "__main__":
    from trl import TrlParser

    (parsed,) = TrlParser((LoadSelectedArguments,), prog="load_selected.py").parse_args_and_config(
        sys.argv[1:]
    )
    raise SystemExit(main(parsed))
