"""`rap-hf` command line: TRL-style subcommands, every flag also settable from a YAML `--config` file.

rap-hf score   --model M --dataset D --output DIR [RAPConfig flags]
rap-hf select  --scores DIR --output DIR2 [selection flags]
rap-hf push    --scores DIR --repo-id ORG/NAME [--private]
rap-hf train   --config FILE.yaml [--accelerate_config NAME|PATH]
rap-hf explore [PATH_OR_REPO_ID]
rap-hf demo    [--output DIR]
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rap_hf.cli.launcher import TrainArgumentTypes
from rap_hf.config import RAPConfig
from rap_hf.scoring.checkpointing import SCORING_METADATA

logger = logging.getLogger("rap_hf")


@dataclass
class ScoreArguments:
    """Arguments of `rap-hf score` (the RAPConfig fields are flags too)."""

    model: str = field(
        metadata={"help": "Hub id or local directory of the scoring VLM (the base model you will train)."}
    )
    dataset: str = field(
        metadata={
            "help": "Dataset: a save_to_disk folder, a parquet/json/csv file, a folder of data files, "
            "builtin:NAME, or a Hub id."
        }
    )
    output: str = field(metadata={"help": "Folder to write the scored dataset to (save_to_disk format)."})
    dataset_config: str | None = field(
        default=None, metadata={"help": "Dataset configuration name (Hub datasets)."}
    )
    split: str = field(default="train", metadata={"help": "Split to score."})
    max_rows: int | None = field(
        default=None, metadata={"help": "Score only the first N rows (for a quick look)."}
    )
    revision: str | None = field(default=None, metadata={"help": "Model revision (branch, tag or commit)."})
    torch_dtype: str = field(
        default="auto", metadata={"help": "Model dtype: auto, bfloat16, float16, float32."}
    )
    device: str | None = field(default=None, metadata={"help": "Device to score on, e.g. cuda:0 or cpu."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, eager, flash_attention_2, ..."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the repo (off by default)."}
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Discard what --output holds (a finished or unfinished run with other settings) and start "
            "over. Without it, the same command resumes an interrupted run and other settings are refused."
        },
    )
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "Keep OUTPUT/rap_checkpoint/ (the per-batch files) after the merge."}
    )
    num_proc: int | None = field(
        default=None,
        metadata={
            "help": "Single-process multi-GPU: N datasets.map workers, one model copy per GPU (cuda:rank). "
            "The alternative to `accelerate launch`."
        },
    )
    zero3_gather_params: bool = field(
        default=False,
        metadata={
            "help": "Under a ZeRO-3 accelerate config: gather the full weights for scoring (fast; the model must "
            "fit on one GPU) instead of scoring the sharded model in lock-step."
        },
    )
    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "Launch the scoring with `accelerate launch` and this config: a shipped name (single_gpu, "
            "multi_gpu, zero2, zero3) or a YAML path. Default: run in this process (or in each process of an "
            "`accelerate launch`/`torchrun` you started)."
        },
    )
    num_processes: int | None = field(
        default=None,
        metadata={"help": "With --accelerate_config: processes to launch (overrides the config)."},
    )


@dataclass
class SelectArguments:
    """Arguments of `rap-hf select` (the selection fields of RAPConfig are flags too)."""

    scores: str = field(metadata={"help": "Folder written by `rap-hf score`."})
    output: str = field(metadata={"help": "Folder for annotated/, selected/, report.json and report.md."})


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


@dataclass
class DemoArguments:
    """Arguments of `rap-hf demo`: score and select built-in data with the shipped reference model, offline."""

    output: str = field(default="rap_outputs/demo", metadata={"help": "Folder for the demo's outputs."})
    model: str = field(
        default="reference",
        metadata={
            "help": "'reference' (the shipped rap-tiny-vl), 'tiny' (a random tiny Qwen2.5-VL built offline: "
            "checks the pipeline only), or a model folder / Hub id."
        },
    )
    dataset: str = field(
        default="builtin:visual-arith", metadata={"help": "Dataset to score (see `rap-hf score`)."}
    )
    split: str = field(default="test", metadata={"help": "Split of the dataset."})
    rows: int = field(default=120, metadata={"help": "Rows to score."})
    num_rollouts: int = field(default=5, metadata={"help": "Rollouts per arm."})
    max_new_tokens: int = field(default=48, metadata={"help": "Maximum new tokens per rollout."})
    batch_size: int = field(default=24, metadata={"help": "Samples per scoring batch."})
    seed: int = field(default=0, metadata={"help": "Seed of the rollouts (and of the tiny model)."})


def _parse(dataclass_types, argv: list[str], prog: str):
    from trl import TrlParser

    parser = TrlParser(dataclass_types, prog=prog)
    return parser.parse_args_and_config(argv)


def _dtype(name: str):
    import torch

    return name if name == "auto" else getattr(torch, name)


def score_main(args: ScoreArguments, config: RAPConfig) -> Path:
    """Score `args.dataset` into `args.output` (+ `rap_scoring.json`), resumably, in one or many processes.

    Under `accelerate launch` / `torchrun` every process runs this; see `rap_hf.scoring.distributed`.
    """
    from rap_hf.dataset_loading import load_any_dataset
    from rap_hf.scoring.distributed import ProcessContext, launch_scoring, score_to_disk
    from rap_hf.scoring.filter import resolve_columns

    if args.accelerate_config is not None:
        launch_scoring(args, config)
        return Path(args.output)
    context = ProcessContext.from_environment()
    with context.main_process_first():  # one download/cache build, the others then read it
        dataset = load_any_dataset(args.dataset, config_name=args.dataset_config, split=args.split)
    resolve_columns(dataset, config)  # fail fast on column errors, before any model work
    if args.max_rows is not None:
        dataset = dataset.select(range(min(args.max_rows, len(dataset))))
    result = score_to_disk(
        args.model,
        dataset,
        args.output,
        config,
        trust_remote_code=args.trust_remote_code,
        torch_dtype=_dtype(args.torch_dtype),
        device=args.device,
        attn_implementation=args.attn_implementation,
        revision=args.revision,
        overwrite=args.overwrite,
        keep_checkpoints=args.keep_checkpoints,
        num_proc=args.num_proc,
        zero3_gather_params=args.zero3_gather_params,
        metadata={
            "model": args.model,
            "revision": args.revision,
            "dataset": args.dataset,
            "dataset_config": args.dataset_config,
            "split": args.split,
        },
        context=context,
    )
    if result.is_main:
        meta = result.metadata
        if result.already_complete:
            print(f"{result.output_dir} is already scored with these settings ({meta.get('rows')} rows)")
        else:
            resumed = f", {meta['resumed_rows']} resumed from checkpoints" if meta["resumed_rows"] else ""
            print(
                f"scored {meta['rows']} rows in {meta['scoring_seconds']:.1f}s on {meta['num_processes']} "
                f"process(es) ({meta['errors']} errors{resumed}) -> {result.output_dir}"
            )
    return Path(args.output)


def select_main(args: SelectArguments, config: RAPConfig) -> dict:
    """Select from a scored folder; write annotated/, selected/ and the report; return the report."""
    import datasets

    from rap_hf.report.summary import build_report, write_report
    from rap_hf.selection import select_cognitive_samples

    scores = Path(args.scores)
    if not scores.exists():
        raise SystemExit(f"error: --scores {scores} does not exist")
    scored = datasets.load_from_disk(str(scores))
    annotated = select_cognitive_samples(scored, config)
    output = Path(args.output)
    annotated.save_to_disk(str(output / "annotated"))
    annotated.filter(lambda selected: selected, input_columns="rap_selected").save_to_disk(
        str(output / "selected")
    )
    extra = {}
    metadata_path = scores / SCORING_METADATA
    if metadata_path.exists():
        extra["scoring"] = json.loads(metadata_path.read_text())
    from rap_hf.report.plots import plot_histograms_by_stage, plot_stage_counts

    figures = [
        plot_stage_counts(annotated, output),
        *plot_histograms_by_stage(annotated, output, config=config),
    ]
    extra["figures"] = [figure.name for figure in figures]
    report = build_report(annotated, config, extra)
    json_path, md_path = write_report(report, output)
    print(
        f"selected {report['selected']} of {report['scored_rows']} scored rows "
        f"({100 * report['selection_ratio']:.1f}%) -> {output / 'selected'}\nreport: {md_path}"
    )
    return report


def push_main(args: PushArguments, config: RAPConfig):
    """Select from a scored folder and push configs `selected` and `scores`, card and figures, to the Hub."""
    import datasets

    from rap_hf.hub import HubPushError, push_rap_dataset

    scores = Path(args.scores)
    if not scores.exists():
        raise SystemExit(f"error: --scores {scores} does not exist")
    metadata_path = scores / SCORING_METADATA
    scoring = json.loads(metadata_path.read_text()) if metadata_path.exists() else None
    try:
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
    except HubPushError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(
        f"pushed {sum(result.rows['selected'].values())} selected of {sum(result.rows['scores'].values())} rows "
        f"-> {result.url}\nload it with: load_dataset({result.repo_id!r}, 'selected')"
    )
    return result


def demo_main(args: DemoArguments) -> dict:
    """Score and select built-in data end to end (reference model by default) and write the report."""
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model == "reference":
        if not reference_model_available():
            raise ValueError(
                f"the reference model is not in {reference_model_path()}; train it with "
                "`python trainers/train_reference_model.py --output_dir rap_hf/demo/assets/rap-tiny-vl` or use --model tiny"
            )
        model = str(reference_model_path())
    elif model == "tiny":
        from rap_hf.demo.tiny_models import save_tiny_vlm

        model = str(save_tiny_vlm(output / "model", seed=args.seed))
    config = RAPConfig(
        num_rollouts=args.num_rollouts,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    score_args = ScoreArguments(
        model=model,
        dataset=args.dataset,
        split=args.split,
        max_rows=args.rows,
        output=str(output / "scores"),
        overwrite=True,  # a demo always scores afresh (other --rows would otherwise be refused)
    )
    score_main(score_args, config)
    report = select_main(
        SelectArguments(scores=str(output / "scores"), output=str(output / "selection")), config
    )
    print(
        "demo outputs:\n"
        f"  model:    {model}\n  scores:   {output / 'scores'}\n"
        f"  selected: {output / 'selection' / 'selected'}\n  report:   {output / 'selection' / 'report.md'}"
    )
    return report


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
            "open the page can use it)."
        },
    )


def explore_main(args: ExploreArguments):
    """Launch the RAP Score Explorer on `args.dataset` (blocks until interrupted)."""
    try:
        from rap_hf.explorer.app import launch_explorer
    except ImportError as exc:
        raise ValueError(f'the explorer needs gradio: pip install "rap-hf[space]" ({exc})') from exc

    return launch_explorer(
        args.dataset,
        split=args.split,
        model=None if args.model == "none" else args.model,
        host=args.host,
        port=args.port,
        allow_push=args.allow_push,
    )


@dataclass
class TrainArguments:
    """Arguments of `rap-hf train` itself. The training flags (RAPScriptArguments, RAPGRPOConfig, TRL's
    ModelConfig; see `rap_hf.training.script`) follow, on the command line or in the `--config` YAML."""

    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "accelerate config: a shipped name (single_gpu, multi_gpu, zero2, zero3) or a YAML path. "
            "Default: accelerate's own default config, else one process."
        },
    )
    num_processes: int | None = field(
        default=None, metadata={"help": "Processes to launch (overrides the accelerate config)."}
    )
    main_process_port: int | None = field(
        default=None, metadata={"help": "Rendezvous port of the processes."}
    )
    launch_args: str | None = field(
        default=None,
        metadata={"help": "More `accelerate launch` flags, one string, e.g. '--mixed_precision no'."},
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "Validate, write the launch config, print the command; do not train."},
    )


def train_main(args: TrainArguments, script_args, training_args, model_args) -> list[str]:
    """Launch GRPO training on RAP-selected data with `accelerate launch` (see `rap_hf.cli.launcher`)."""
    from rap_hf.cli.launcher import launch_training

    return launch_training(
        script_args,
        training_args,
        model_args,
        accelerate_config=args.accelerate_config,
        num_processes=args.num_processes,
        main_process_port=args.main_process_port,
        launch_args=args.launch_args,
        dry_run=args.dry_run,
    )


# name -> (one-line help, argument dataclasses, runner taking the parsed dataclasses). A new subcommand is
# one entry here plus its runner.
COMMANDS = {
    "score": (
        "Score a dataset with RAP (rollouts, rewards, attention) and save the score columns.",
        (ScoreArguments, RAPConfig),
        score_main,
    ),
    "select": (
        "Select cognitive samples from a scored dataset (no model) and write a report.",
        (SelectArguments, RAPConfig),
        select_main,
    ),
    "push": (
        "Push scores and the selected subset, with a dataset card, to the Hugging Face Hub.",
        (PushArguments, RAPConfig),
        push_main,
    ),
    "demo": (
        "Run score + select end to end on built-in data with an offline tiny model.",
        (DemoArguments,),
        demo_main,
    ),
    "explore": (
        "Open the RAP Score Explorer (Gradio) on a scored dataset: scores, rollouts, attention, live re-selection.",
        (ExploreArguments,),
        explore_main,
    ),
    "train": (
        "Train with GRPO (TRL) on the RAP-selected subset, through `accelerate launch`.",
        TrainArgumentTypes(TrainArguments),
        train_main,
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = ["usage: rap-hf {" + ",".join(COMMANDS) + "} [--config FILE.yaml] [flags]", "", "commands:"]
        lines += [f"  {name:<8} {help_text}" for name, (help_text, _, _) in COMMANDS.items()]
        lines += ["", "Run `rap-hf COMMAND --help` for the flags of a command."]
        print("\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    name, rest = argv[0], argv[1:]
    _, types, runner = COMMANDS[name]
    if name == "explore" and rest and not rest[0].startswith("-"):
        rest = ["--dataset", *rest]  # `rap-hf explore PATH_OR_REPO_ID`: the dataset may be given bare
    try:
        parsed = _parse(types, rest, prog=f"rap-hf {name}")
        runner(*parsed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
