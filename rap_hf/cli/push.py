"""`rap-hf push`: select from a `rap-hf score` folder and push it to the Hugging Face Hub.

    rap-hf push --scores rap_outputs/scores --repo-id ORG/NAME [--private] [--lambda_c 0.5 ...]

Pushes the dataset configs `selected` (the default one) and `scores`, a dataset card and the figures. The
token comes from huggingface_hub's usual sources (HF_TOKEN, `hf auth login`), never from a flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import TrlParser

from rap_hf.cli.select import read_scoring_metadata, scores_folder
from rap_hf.config import RAPConfig


@dataclass
class PushArguments:
    """Arguments of `rap-hf push` (the selection fields of RAPConfig are flags too). The Hub token comes from
    huggingface_hub's usual sources (HF_TOKEN, `hf auth login`), never from a flag."""

    scores: str = field(
        metadata={"help": "Folder written by `rap-hf score` (its rap_scoring.json goes on the card)."}
    )
    repo_id: str = field(metadata={"help": "Dataset repo to push to, ORG/NAME; created if missing."})
    private: bool = field(default=False, metadata={"help": "Create the repo private (ignored if it exists)."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (default: main)."})
    split: str | None = field(
        default=None,
        metadata={
            "help": "Split name on the Hub (default: the scored split from rap_scoring.json, else train)."
        },
    )
    drop_completions: bool = field(
        default=False,
        metadata={"help": "Drop the rollout texts from the `selected` config (kept in `scores`)."},
    )
    commit_message: str | None = field(default=None, metadata={"help": "Prefix of the commit messages."})


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `rap-hf push`: (`PushArguments`, `RAPConfig`), with `--config FILE.yaml`."""
    return TrlParser((PushArguments, RAPConfig), prog=prog)


def main(args: PushArguments, config: RAPConfig) -> Any:
    """Select from a scored folder and push configs `selected` and `scores`, card and figures, to the Hub.

    Returns:
        The `push_rap_dataset` result (repo id, URL, rows per config and split).

    Raises:
        RAPUserError: ``--scores`` does not exist.
        HubPushError: the push failed (the message names the cause and the step).
    """
    import datasets

    from rap_hf.hub import push_rap_dataset

    scores = scores_folder(args.scores)
    scoring = read_scoring_metadata(scores)
    result = push_rap_dataset(
        datasets.load_from_disk(str(scores)),
        args.repo_id,
        config=config,
        private=True if args.private else None,
        revision=args.revision,
        commit_message=args.commit_message,
        split=args.split or (scoring or {}).get("split") or "train",
        drop_completions=args.drop_completions,
        scoring=scoring,
    )
    print(
        f"pushed {sum(result.rows['selected'].values())} selected of {sum(result.rows['scores'].values())} rows "
        f"-> {result.url}\nload it with: load_dataset({result.repo_id!r}, 'selected')"
    )
    return result
