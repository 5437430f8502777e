"""The paper's claim at small scale: GRPO on the RAP subset vs the full pool vs a random subset, with the cost
of selection counted.

Used by ``benchmarks/reproduce.py`` (which only parses flags and calls `run_reproduction`). The experiment:

1. **Weak start**: the reference model's SFT recipe (`rap_hf.demo.reference_model`) stopped early, so GRPO has room
   to improve. Trained once and cached in ``work_dir``; its cost is common to every arm and not counted.
2. **Pool**: ``pool_rows`` rows of `visual-arith`'s train split (another seed than the SFT rows), scored once
   with `RAPDataFilter` on the weak model. The scoring cost (wall-clock, generated tokens) is charged to every
   RAP arm's total.
3. **Arms**, trained with `RAPGRPOTrainer` under the same GRPO settings, each for ``epochs`` passes over its
   own training rows (so smaller data means fewer steps, as in the paper):
   ``full`` (every pool row), ``rap`` (the RAP subset, paper thresholds), ``random`` (a seeded random subset
   of the same size), ``rap_online`` (the RAP subset with online RAP: saturated rows are replaced from the
   rejected rows), ``rap_no_drm`` (RAP without the DRM step).
4. **Evaluation**: greedy pass@1 (the shipped `evaluate` metric ``rap_pass_at_1``) on held-out `visual` and
   `hard` items of the test split (disjoint digit scans), with the image and on their text-only version.
5. **Report**: mean and std over seeds per arm, a Markdown table and a plot of accuracy against total compute.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets

logger = logging.getLogger("rap_hf")

ARMS = ("full", "rap", "random", "rap_online", "rap_no_drm")
ARM_LABELS = {
    "full": "(a) full pool",
    "rap": "(b) RAP subset",
    "random": "(c) random subset",
    "rap_online": "(d) RAP + online",
    "rap_no_drm": "(e) RAP, no DRM",
}
# Arms whose data comes from RAP scoring: the scoring cost is part of their total.
SCORED_ARMS = ("rap", "rap_online", "rap_no_drm")
EVAL_KINDS = ("visual", "hard")


@dataclass
class ReproduceConfig:
    """Sizes, seeds and settings of the reproduction (defaults: under an hour on a 2-core CPU)."""

    output_dir: str = field(
        default="benchmarks/results", metadata={"help": "Where the table, plot and JSON are written."}
    )
    work_dir: str = field(
        default="rap_outputs/reproduce",
        metadata={"help": "Cache: weak model, scored pool, trained arms (reused when settings match)."},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Training seeds."})
    arms: list[str] = field(default_factory=lambda: list(ARMS), metadata={"help": f"Arms to run, of {ARMS}."})
    start_model: str | None = field(
        default=None,
        metadata={
            "help": "Start from this model instead of training the weak checkpoint (e.g. for a smoke run)."
        },
    )
    weak_sft_steps: int = field(
        default=250,
        metadata={"help": "SFT steps of the weak starting checkpoint (the full recipe runs 900)."},
    )
    pool_rows: int = field(default=400, metadata={"help": "visual-arith train rows in the GRPO pool."})
    pool_seed: int = field(default=1, metadata={"help": "Seed of the pool rows (the SFT rows use seed 0)."})
    eval_rows: int = field(
        default=400, metadata={"help": "Test-split rows drawn; the visual and hard ones are evaluated."}
    )
    num_rollouts: int = field(default=5, metadata={"help": "RAP scoring rollouts per arm (M)."})
    max_new_tokens: int = field(
        default=40, metadata={"help": "Max new tokens for scoring, training and evaluation."}
    )
    epochs: float = field(default=1.0, metadata={"help": "Passes over each arm's training rows."})
    prompts_per_step: int = field(default=4, metadata={"help": "Prompts per GRPO step."})
    num_generations: int = field(default=8, metadata={"help": "GRPO group size."})
    learning_rate: float = field(
        default=5e-5,
        metadata={"help": "GRPO learning rate (2e-4 made every arm worse on visual items than the start)."},
    )
    temperature: float = field(default=1.0, metadata={"help": "GRPO sampling temperature."})
    overwrite: bool = field(default=False, metadata={"help": "Recompute cached steps."})

    def validate(self) -> None:
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise ValueError(f"unknown arms {sorted(unknown)}; arms are {ARMS}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.pool_rows < self.prompts_per_step:
            raise ValueError("pool_rows must be at least prompts_per_step")


# ----------------------------------------------------------------------------------------------- stages


def weak_model(config: ReproduceConfig) -> tuple[Path, dict[str, Any]]:
    """The weak starting checkpoint (cached): the reference SFT recipe with ``weak_sft_steps`` steps."""
    from rap_hf.demo.reference_model import ReferenceRecipe, train_reference_model

    if config.start_model:
        return Path(config.start_model), {"sft_seconds": None}
    path = Path(config.work_dir) / f"weak_sft{config.weak_sft_steps}"
    recipe = ReferenceRecipe(max_steps=config.weak_sft_steps)
    # Reuse the cached checkpoint only if it was trained with exactly this recipe.
    cached = path / "recipe.json"
    if config.overwrite or not cached.exists() or json.loads(cached.read_text()) != asdict(recipe):
        if path.exists():
            shutil.rmtree(path)
        logger.info("training the weak start (%d SFT steps) into %s", config.weak_sft_steps, path)
        train_reference_model(path, recipe)
        shutil.rmtree(path / "_checkpoints", ignore_errors=True)
    log = json.loads((path / "training_log.json").read_text())
    return path, {"sft_seconds": log["train_seconds"] + log.get("vision_pretrain_seconds", 0.0)}


def eval_dataset(config: ReproduceConfig) -> datasets.Dataset:
    """Held-out `visual` and `hard` items of the test split (digit scans disjoint from train)."""
    from rap_hf.demo.visual_arith import visual_arith

    test = visual_arith("test", config.eval_rows, seed=0)
    return test.filter(lambda kind: kind in EVAL_KINDS, input_columns="kind").remove_columns(
        ["reference_completion"]
    )


def score_pool(config: ReproduceConfig, model: Path) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Score the GRPO pool with RAP on the weak model (cached with its cost)."""
    import hashlib

    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.visual_arith import visual_arith

    key = json.dumps(
        [
            str(Path(model).resolve()),
            config.pool_rows,
            config.pool_seed,
            config.num_rollouts,
            config.max_new_tokens,
        ]
    )
    path = Path(config.work_dir) / f"pool_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    cost_file = path / "cost.json"
    if not config.overwrite and cost_file.exists():
        return datasets.load_from_disk(str(path / "scored")), json.loads(cost_file.read_text())
    pool = visual_arith("train", config.pool_rows, seed=config.pool_seed).remove_columns(
        ["reference_completion"]
    )
    flt = RAPDataFilter(
        str(model),
        config=RAPConfig(num_rollouts=config.num_rollouts, max_new_tokens=config.max_new_tokens, seed=0),
    )
    start = time.perf_counter()
    scored = flt.score(pool, desc="RAP scoring the pool")
    cost = {
        "seconds": time.perf_counter() - start,
        "generated_tokens": flt.stats.generated_tokens,
        "rows": len(pool),
    }
    scored.save_to_disk(str(path / "scored"))
    cost_file.write_text(json.dumps(cost, indent=2))
    return datasets.load_from_disk(str(path / "scored")), cost


@dataclass
class ArmData:
    """One arm's training data: the dataset handed to `RAPGRPOTrainer`, how it reads it, and its size."""

    dataset: datasets.Dataset
    train_on: str
    online: bool
    rows: int
    stage_counts: dict[str, int] | None = None


def arm_data(arm: str, scored: datasets.Dataset, seed: int) -> ArmData:
    """The training rows of ``arm`` (see the module docstring) from the scored pool."""
    from rap_hf import RAPConfig, select_cognitive_samples
    from rap_hf.selection import SELECTED_COLUMN, stage_counts

    if arm == "full":
        return ArmData(scored, "all", False, len(scored))
    no_drm = arm == "rap_no_drm"
    annotated = select_cognitive_samples(scored, RAPConfig(use_drm=not no_drm))
    size = int(sum(annotated[SELECTED_COLUMN]))
    counts = stage_counts(annotated)
    if arm in ("rap", "rap_no_drm"):
        return ArmData(annotated, "selected", False, size, counts)
    if arm == "rap_online":
        return ArmData(annotated, "selected", True, size, counts)
    if arm == "random":
        # Same size as RAP's subset (``annotated`` is RAP's selection here), drawn from the whole pool with
        # this run's seed.
        return ArmData(scored.shuffle(seed=seed).select(range(size)), "as_is", False, size)
    raise ValueError(f"unknown arm {arm!r}; arms are {ARMS}")


def grpo_args(config: Any, data: ArmData, seed: int, output_dir: Path, steps: int) -> Any:
    """The `RAPGRPOConfig` every arm trains with (``config``: a `ReproduceConfig`, or anything with its
    ``prompts_per_step``, ``num_generations``, ``max_new_tokens``, ``temperature`` and ``learning_rate``)."""
    import torch

    from rap_hf import RAPGRPOConfig

    return RAPGRPOConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        gradient_checkpointing=False,
        disable_tqdm=True,
        rap_train_on=data.train_on,
        rap_online=data.online,
    )


def train_arm(
    config: ReproduceConfig, model: Path, data: ArmData, seed: int, output_dir: Path
) -> dict[str, Any]:
    """GRPO on one arm's data; returns the training cost (wall-clock, steps, generated tokens)."""
    from rap_hf import RAPGRPOTrainer

    steps = max(1, math.ceil(data.rows * config.epochs / config.prompts_per_step))
    batch = config.prompts_per_step * config.num_generations
    args = grpo_args(config, data, seed, output_dir, steps)
    trainer = RAPGRPOTrainer(model=str(model), args=args, train_dataset=data.dataset)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(str(output_dir))
    # One log entry per step (logging_steps=1), one generation batch of `batch` completions per step.
    logs = [entry for entry in trainer.state.log_history if "completions/mean_length" in entry]
    tokens = int(round(sum(entry["completions/mean_length"] * batch for entry in logs)))
    rewards = [entry.get("rewards/accuracy_reward/mean") for entry in logs]
    rewards = [r for r in rewards if r is not None]
    del trainer
    return {
        "seconds": seconds,
        "steps": steps,
        "rows": data.rows,
        "generated_tokens": tokens,
        "mean_train_reward": statistics.fmean(rewards) if rewards else float("nan"),
    }


def evaluate_model(
    model: Path | str, evaluation: datasets.Dataset, config: ReproduceConfig
) -> dict[str, Any]:
    """Greedy pass@1 per kind, with the image and text-only, through the shipped `rap_pass_at_1` metric."""
    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.metrics import load_pass_at_1

    flt = RAPDataFilter(
        str(model),
        config=RAPConfig(
            num_rollouts=1, temperature=0.0, max_new_tokens=config.max_new_tokens, compute_ace=False
        ),
    )
    start = time.perf_counter()
    scored = flt.score(evaluation, desc="evaluating")
    metric = load_pass_at_1()
    result: dict[str, Any] = {"seconds": time.perf_counter() - start}
    # Read the needed columns once (row access would decode every row's image).
    columns = scored.select_columns(["kind", "solution", "rap_completions_mm", "rap_completions_text"])[:]
    for kind in EVAL_KINDS:
        rows = [i for i, k in enumerate(columns["kind"]) if k == kind]
        references = [columns["solution"][i] for i in rows]
        for arm, column in (("image", "rap_completions_mm"), ("text", "rap_completions_text")):
            predictions = [(columns[column][i] or [""])[0] for i in rows]
            result[f"{kind}_{arm}"] = metric.compute(predictions=predictions, references=references)["pass@1"]
    return result


# ----------------------------------------------------------------------------------------------- run


def run_reproduction(config: ReproduceConfig) -> dict[str, Any]:
    """Run every (arm, seed) of ``config``, write the table, plot and JSON, and return the results."""
    config.validate()
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model, weak_cost = weak_model(config)
    evaluation = eval_dataset(config)
    baseline = evaluate_model(model, evaluation, config)
    scored, scoring_cost = score_pool(config, model)
    runs: list[dict[str, Any]] = []
    for seed in config.seeds:
        for arm in config.arms:
            data = arm_data(arm, scored, seed)
            out = work / "runs" / f"{arm}_seed{seed}"
            if out.exists():
                shutil.rmtree(out)
            if data.rows == 0:
                logger.warning("arm %s seed %d has no training rows; skipped", arm, seed)
                continue
            logger.info("training arm %s seed %d on %d rows", arm, seed, data.rows)
            train_cost = train_arm(config, model, data, seed, out)
            scores = evaluate_model(out, evaluation, config)
            scoring = scoring_cost if arm in SCORED_ARMS else {"seconds": 0.0, "generated_tokens": 0}
            runs.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "train": train_cost,
                    "scoring": {k: scoring[k] for k in ("seconds", "generated_tokens")},
                    "total_seconds": train_cost["seconds"] + scoring["seconds"],
                    "total_generated_tokens": train_cost["generated_tokens"] + scoring["generated_tokens"],
                    "eval": scores,
                    "stage_counts": data.stage_counts,
                }
            )
            shutil.rmtree(out, ignore_errors=True)  # keep the cache small: only the numbers are kept
    results = {
        "config": asdict(config),
        "weak_start": {"eval": baseline, **weak_cost},
        "scoring": scoring_cost,
        "pool_kinds": _count(scored["kind"]),
        "runs": runs,
        "summary": summarize(runs),
        "wall_seconds": time.perf_counter() - started,
        "machine": _machine(),
    }
    results["outputs"] = {k: str(v) for k, v in write_outputs(results, Path(config.output_dir)).items()}
    return results


def _count(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _machine() -> str:
    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return f"{platform.platform()}, {device}, torch {torch.__version__}"


METRICS = (
    ("visual_image", "visual, image"),
    ("visual_text", "visual, text-only"),
    ("hard_image", "hard, image"),
    ("hard_text", "hard, text-only"),
)


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and std over seeds of every metric and cost, per arm."""
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for arm in ARMS:
        arm_runs = [r for r in runs if r["arm"] == arm]
        if not arm_runs:
            continue
        row = {key: _mean_std([r["eval"][key] for r in arm_runs]) for key, _ in METRICS}
        row["rows"] = _mean_std([r["train"]["rows"] for r in arm_runs])
        row["steps"] = _mean_std([r["train"]["steps"] for r in arm_runs])
        row["train_seconds"] = _mean_std([r["train"]["seconds"] for r in arm_runs])
        row["scoring_seconds"] = _mean_std([r["scoring"]["seconds"] for r in arm_runs])
        row["total_seconds"] = _mean_std([r["total_seconds"] for r in arm_runs])
        row["train_tokens"] = _mean_std([r["train"]["generated_tokens"] for r in arm_runs])
        row["scoring_tokens"] = _mean_std([r["scoring"]["generated_tokens"] for r in arm_runs])
        row["total_tokens"] = _mean_std([r["total_generated_tokens"] for r in arm_runs])
        summary[arm] = row
    return summary


def markdown_table(results: dict[str, Any]) -> str:
    """The results as Markdown: one row per arm, mean +- std over seeds."""

    def cell(value: tuple[float, float], digits: int = 3) -> str:
        mean, std = value
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    base = results["weak_start"]["eval"]
    seeds = len(results["config"]["seeds"])
    lines = [
        f"Greedy pass@1 on held-out items (mean ± std over {seeds} seeds); seconds on {results['machine']}.",
        "",
        "| arm | rows | steps | "
        + " | ".join(label for _, label in METRICS)
        + " | train s | scoring s | total s | gen. tokens train | scoring | total |",
        "|---|---:|---:|" + "---:|" * len(METRICS) + "---:|---:|---:|---:|---:|---:|",
        "| weak start (no GRPO) | | | "
        + " | ".join(f"{base[key]:.3f}" for key, _ in METRICS)
        + " | | | | | | |",
    ]
    for arm, row in results["summary"].items():
        lines.append(
            f"| {ARM_LABELS[arm]} | {row['rows'][0]:.0f} | {row['steps'][0]:.0f} | "
            + " | ".join(cell(row[key]) for key, _ in METRICS)
            + f" | {cell(row['train_seconds'], 0)} | {row['scoring_seconds'][0]:.0f} | "
            f"{cell(row['total_seconds'], 0)} | {row['train_tokens'][0]:.0f} | "
            f"{row['scoring_tokens'][0]:.0f} | {row['total_tokens'][0]:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_compute(results: dict[str, Any], path: Path) -> Path:
    """Accuracy on held-out visual items (with image) against total compute (seconds), one point per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for arm, row in results["summary"].items():
        (x, xerr), (y, yerr) = row["total_seconds"], row["visual_image"]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=ARM_LABELS[arm])
    base = results["weak_start"]["eval"]["visual_image"]
    ax.axhline(base, color="grey", linestyle="--", linewidth=1, label="weak start")
    ax.set_xscale("log")
    ax.set_xlabel("total compute: scoring + training wall-clock (s, log scale)")
    ax.set_ylabel("pass@1, held-out visual items (with image)")
    ax.set_title("RAP subset vs full pool vs random subset")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_outputs(results: dict[str, Any], output_dir: Path) -> dict[str, Path]:
    """``reproduce.json`` (everything), ``reproduce.md`` (the table) and ``reproduce.png`` (the plot)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": output_dir / "reproduce.json",
        "table": output_dir / "reproduce.md",
        "plot": output_dir / "reproduce.png",
    }
    paths["json"].write_text(json.dumps({k: v for k, v in results.items() if k != "outputs"}, indent=2))
    paths["table"].write_text(markdown_table(results))
    plot_accuracy_vs_compute(results, paths["plot"])
    return paths
