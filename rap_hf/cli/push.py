"""`rap-hf push`: select from a `rap-hf score` folder and push it to the Hugging Face Hub in one commit.

    rap-hf push --scores rap_outputs/scores --repo-id ORG/NAME [--private] [--lambda_c 0.5 ...] \
        [--license cc-by-4.0] [--pretty_name "..."] [--card_metadata card.yaml]

Pushes the dataset configs `selected` (the default one) and `scores`, a dataset card and the figure. Takes the
selection flags of `RAPSelectionConfig` only: the scoring settings shown on the card are those the scoring run
recorded in rap_scoring.json. The token comes from huggingface_hub's usual sources (HF_TOKEN, `hf auth login`),
never from a flag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from rap_hf.cli.select import read_scoring_metadata, scores_folder
from rap_hf.config import RAPSelectionConfig
from rap_hf.errors import RAPUserError


@dataclass
class PushArguments:
    """Arguments of `rap-hf push` (the fields of RAPSelectionConfig are flags too). The Hub token comes from
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
    allow_empty_selection: bool = field(
        default=False,
        metadata={
            "help": "When no row is selected, push the `scores` config alone (an earlier `selected` config is "
            "removed and the card says so) instead of stopping with an error."
        },
    )
    license: str | None = field(
        default=None,
        metadata={
            "help": "Card `license` (a Hub license id such as cc-by-4.0). Default: the source dataset's, "
            "when it is a Hub dataset."
        },
    )
    pretty_name: str | None = field(default=None, metadata={"help": "Card `pretty_name`."})
    task_categories: list[str] | None = field(
        default=None, metadata={"help": "Card `task_categories` (default: image-text-to-text)."}
    )
    card_metadata: str | None = field(
        default=None,
        metadata={
            "help": "A YAML or JSON file of card metadata (license, language, tags, ...); the three flags above "
            "override its keys, tags are merged with rap-hf's."
        },
    )
    commit_message: str | None = field(default=None, metadata={"help": "Title of the commit."})


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `rap-hf push`: (`PushArguments`, `RAPSelectionConfig`), with `--config FILE.yaml`."""
    return TrlParser((PushArguments, RAPSelectionConfig), prog=prog)


def card_metadata_from(args: PushArguments) -> dict[str, Any]:
    """The ``card_metadata`` of a push: ``--card_metadata FILE``, then ``--license``, ``--pretty_name`` and
    ``--task_categories`` over it.

    Raises:
        RAPUserError: the file is missing or is not a YAML/JSON mapping.
    """
    metadata: dict[str, Any] = {}
    if args.card_metadata:
        import yaml

        path = Path(args.card_metadata)
        if not path.is_file():
            raise RAPUserError(f"--card_metadata {path} does not exist")
        text = path.read_text(encoding="utf-8")
        try:
            loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise RAPUserError(f"--card_metadata {path} is not valid YAML/JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise RAPUserError(f"--card_metadata {path} must hold a mapping (key: value lines)")
        metadata.update(loaded)
    for key in ("license", "pretty_name", "task_categories"):
        value = getattr(args, key)
        if value:
            metadata[key] = value
    return metadata


def main(args: PushArguments, config: RAPSelectionConfig) -> Any:
    """Select from a scored folder and push configs `selected` and `scores`, card and figure, to the Hub.

    Returns:
        The `push_rap_dataset` result (repo id, URL, rows per config and split, whether a commit was made).

    Raises:
        RAPUserError: ``--scores`` or ``--card_metadata`` does not exist, or bad card metadata.
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
        card_metadata=card_metadata_from(args),
        allow_empty_selection=args.allow_empty_selection,
    )
    selected = result.rows.get("selected")
    what = (
        f"{sum(selected.values())} selected of {sum(result.rows['scores'].values())} rows"
        if selected
        else f"scores only ({sum(result.rows['scores'].values())} rows, nothing selected)"
    )
    change = "" if result.committed else " (unchanged: the repo already held these files, no commit)"
    config_name = "selected" if selected else "scores"
    print(
        f"pushed {what} -> {result.url}{change}\n"
        f"load it with: load_dataset({result.repo_id!r}, {config_name!r})"
    )
    return result
