"""Load the RAP-selected subset of a Hub dataset (config `selected`) and optionally save it to disk.

    python hub_scripts/load_selected.py --repo_id ORG/NAME [--split train] [--revision REV] [--output DIR]

`--repo_id` may also be a local folder laid out like the repo. The library call is one line:
`rap_hf.hub.load_selected(repo_id, split=...)`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from rap_hf.hub import load_selected


@dataclass
class LoadSelectedArguments:
    """Arguments of `load_selected.py`."""

    repo_id: str = field(metadata={"help": "Dataset repo on the Hub (ORG/NAME) or a local folder like it."})
    split: str = field(default="train", metadata={"help": "Split to load."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit (default: main)."})
    output: str | None = field(default=None, metadata={"help": "Save the subset here (save_to_disk format)."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "datasets cache folder (default: HF cache)."}
    )


def main(args: LoadSelectedArguments) -> int:
    """Load the subset, print a summary, save it when `--output` is given."""
    subset = load_selected(args.repo_id, split=args.split, revision=args.revision, cache_dir=args.cache_dir)
    print(
        f"{args.repo_id} [selected/{args.split}]: {len(subset)} rows; columns: {', '.join(subset.column_names)}"
    )
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
