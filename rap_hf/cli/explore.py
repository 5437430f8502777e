"""`rap-hf explore`: open the RAP Score Explorer (the Gradio Space) locally on a scored dataset.

    rap-hf explore                                # the shipped visual-arith scores of the reference model
    rap-hf explore rap_outputs/scores             # the dataset may be given bare, or as --dataset
    rap-hf explore ORG/NAME --model none --port 7861

Needs gradio (``pip install "rap-hf[space]"``). Blocks until interrupted.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from trl import TrlParser

from rap_hf.errors import RAPUserError


@dataclass
class ExploreArguments:
    """Arguments of `rap-hf explore`: open the RAP Score Explorer (the Gradio Space) locally."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Scored dataset to open: a `rap-hf score` folder, a parquet/json/csv file, or a Hub id (its "
            "`scores` config). Default: the shipped visual-arith scores of the reference model."
        },
    )
    split: str = field(default="train", metadata={"help": "Split of --dataset."})
    model: str = field(
        default="reference",
        metadata={
            "help": "Model of the attention view and of scoring a new sample: 'reference' (the shipped "
            "rap-tiny-vl), a local model folder, or 'none'."
        },
    )
    host: str = field(
        default="127.0.0.1", metadata={"help": "Address to serve on (0.0.0.0: all interfaces)."}
    )
    port: int = field(default=7860, metadata={"help": "Port to serve on."})
    allow_push: bool = field(
        default=False,
        metadata={
            "help": "Enable the page's push button (pushes with the HF_TOKEN of this machine; anyone who can "
            "open the page can use it). Needs --push_namespace."
        },
    )
    push_namespace: str | None = field(
        default=None,
        metadata={
            "help": "The namespace visitors push to (a user or organisation the token writes to): they choose "
            "only the name of a new repo in it."
        },
    )
    max_download_mb: float = field(
        default=100.0,
        metadata={"help": "The largest Hub dataset (one split) a visitor may load from the page, in MB."},
    )


class ExploreParser(TrlParser):
    """A `TrlParser` that also takes the dataset as a bare first argument: ``rap-hf explore PATH_OR_REPO_ID``."""

    def parse_args_and_config(self, args: Iterable[str] | None = None, *more: Any, **kwargs: Any) -> Any:
        """`TrlParser.parse_args_and_config`, with a leading bare argument read as ``--dataset``."""
        args = list(sys.argv[1:] if args is None else args)
        if args and not args[0].startswith("-"):
            args = ["--dataset", *args]
        return super().parse_args_and_config(args, *more, **kwargs)


def make_parser(prog: str | None = None) -> ExploreParser:
    """The parser of `rap-hf explore`: (`ExploreArguments`,), with `--config FILE.yaml` and a bare dataset."""
    return ExploreParser((ExploreArguments,), prog=prog)


def main(args: ExploreArguments) -> Any:
    """Launch the RAP Score Explorer on `args.dataset` (blocks until interrupted); return the Gradio app.

    Raises:
        RAPUserError: gradio is not installed, or --allow_push without --push_namespace.
    """
    if importlib.util.find_spec("gradio") is None:
        raise RAPUserError('the explorer needs gradio: pip install "rap-hf[space]"')
    from rap_hf.explorer.app import launch_explorer
    from rap_hf.explorer.limits import ExplorerLimits

    return launch_explorer(
        args.dataset,
        split=args.split,
        model=None if args.model == "none" else args.model,
        host=args.host,
        port=args.port,
        allow_push=args.allow_push,
        push_namespace=args.push_namespace,
        limits=ExplorerLimits(max_download_mb=args.max_download_mb),
    )
