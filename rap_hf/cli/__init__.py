"""`rap-hf`: the command line. TRL-style subcommands; every flag can also come from a YAML ``--config`` file.

    rap-hf score   --model M --dataset D --output DIR [RAPConfig flags] [--accelerate_config NAME]
    rap-hf select  --scores DIR --output DIR2 [selection flags]
    rap-hf push    --scores DIR --repo-id ORG/NAME [--private]
    rap-hf train   --config FILE.yaml [--accelerate_config NAME|PATH]
    rap-hf explore [PATH_OR_REPO_ID]
    rap-hf demo    [--output DIR]

One module per command (`rap_hf.cli.score`, ...), each with its arguments dataclass, ``make_parser(prog)``
(a `TrlParser`) and ``main(*parsed)``. This module only dispatches: it imports a command's module when that
command runs, so ``rap-hf --help`` stays fast. A new command is a module plus one line in `COMMANDS`.

Errors: a `RAPUserError` (a mistake the user can fix) prints ``error: MESSAGE`` and exits with status 2; any
other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from rap_hf.errors import RAPUserError

if TYPE_CHECKING:
    from trl import TrlParser

    from rap_hf.cli.demo import DemoArguments
    from rap_hf.cli.demo import main as demo_main
    from rap_hf.cli.explore import ExploreArguments
    from rap_hf.cli.explore import main as explore_main
    from rap_hf.cli.push import PushArguments
    from rap_hf.cli.push import main as push_main
    from rap_hf.cli.score import ScoreArguments
    from rap_hf.cli.score import main as score_main
    from rap_hf.cli.select import SelectArguments
    from rap_hf.cli.select import main as select_main
    from rap_hf.cli.train import TrainArguments
    from rap_hf.cli.train import main as train_main


class Command(NamedTuple):
    """A subcommand: the module holding its ``make_parser`` and ``main``, and its one-line help."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "score": Command(
        "rap_hf.cli.score",
        "Score a dataset with RAP (rollouts, rewards, attention) and save the score columns.",
    ),
    "select": Command(
        "rap_hf.cli.select", "Select cognitive samples from a scored dataset (no model) and write a report."
    ),
    "push": Command(
        "rap_hf.cli.push",
        "Push scores and the selected subset, with a dataset card, to the Hugging Face Hub.",
    ),
    "demo": Command(
        "rap_hf.cli.demo",
        "Run score + select end to end on built-in data with the shipped reference model (offline).",
    ),
    "explore": Command(
        "rap_hf.cli.explore",
        "Open the RAP Score Explorer (Gradio) on a scored dataset: scores, rollouts, attention, live re-selection.",
    ),
    "train": Command(
        "rap_hf.cli.train", "Train with GRPO (TRL) on the RAP-selected subset, through `accelerate launch`."
    ),
}

# The names `rap_hf.cli` exported before the commands had their own modules, loaded on first use.
_LAZY_EXPORTS = {
    "ScoreArguments": ("rap_hf.cli.score", "ScoreArguments"),
    "score_main": ("rap_hf.cli.score", "main"),
    "SelectArguments": ("rap_hf.cli.select", "SelectArguments"),
    "select_main": ("rap_hf.cli.select", "main"),
    "PushArguments": ("rap_hf.cli.push", "PushArguments"),
    "push_main": ("rap_hf.cli.push", "main"),
    "DemoArguments": ("rap_hf.cli.demo", "DemoArguments"),
    "demo_main": ("rap_hf.cli.demo", "main"),
    "ExploreArguments": ("rap_hf.cli.explore", "ExploreArguments"),
    "explore_main": ("rap_hf.cli.explore", "main"),
    "TrainArguments": ("rap_hf.cli.train", "TrainArguments"),
    "train_main": ("rap_hf.cli.train", "main"),
}

__all__ = [
    "COMMANDS",
    "Command",
    "DemoArguments",
    "ExploreArguments",
    "PushArguments",
    "ScoreArguments",
    "SelectArguments",
    "TrainArguments",
    "demo_main",
    "explore_main",
    "main",
    "parse_args",
    "print_usage",
    "push_main",
    "run_command",
    "score_main",
    "select_main",
    "train_main",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        module, attribute = _LAZY_EXPORTS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'rap_hf.cli' has no attribute {name!r}")


def parse_args(parser: TrlParser, argv: list[str]) -> tuple[Any, ...]:
    """Parse ``argv`` (and the YAML of its ``--config``) into the parser's dataclasses.

    ``--help`` and malformed flags exit like argparse does (status 0 and 2).

    Raises:
        RAPUserError: an argument, on the command line or in the ``--config`` file, that no dataclass has.
    """
    *parsed, unknown = parser.parse_args_and_config(argv, return_remaining_strings=True)
    if unknown:
        raise RAPUserError(f"unknown arguments {unknown}; see `{parser.prog} --help`")
    return tuple(parsed)


def run_command(name: str, argv: list[str]) -> Any:
    """Run command ``name`` on ``argv`` (the arguments after the command name); return what its ``main`` returns.

    Raises:
        KeyError: ``name`` is not in `COMMANDS`.
    """
    module = importlib.import_module(COMMANDS[name].module)
    parsed = parse_args(module.make_parser(prog=f"rap-hf {name}"), argv)
    return module.main(*parsed)


def print_usage() -> None:
    """Print the commands and their one-line help."""
    lines = ["usage: rap-hf {" + ",".join(COMMANDS) + "} [--config FILE.yaml] [flags]", "", "commands:"]
    lines += [f"  {name:<8} {command.help}" for name, command in COMMANDS.items()]
    lines += ["", "Run `rap-hf COMMAND --help` for the flags of a command."]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """The ``rap-hf`` console script: run ``argv`` (default: the command line); return the exit status.

    A `RAPUserError` prints ``error: MESSAGE`` to stderr and returns 2, as does an unknown command. Any other
    exception propagates.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print_usage()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print_usage()
        print(f"\nerror: unknown command {name!r}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_command(name, rest)
    except RAPUserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
