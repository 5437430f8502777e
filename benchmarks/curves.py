"""Does RAP pay? Accuracy-versus-compute curves of GRPO at an equal budget of generations (issue 16).

Used by ``benchmarks/compute_curves.py`` (which only parses flags and calls `run_curves`). Unlike
``reproduction`` (one epoch over each arm's own rows, so a small subset trains for fewer steps), every arm here
trains for the **same number of GRPO steps** (``budget_steps``, by default ``passes`` = 2 passes over the full
pool), with the same prompts per step and group size, so the same number of generations; an arm with fewer
rows goes round them more often. Each run is evaluated every ``eval_every`` steps, which gives curves of
accuracy against cumulative compute.

1. **Weak start, pool, evaluation items**: as in ``reproduction`` (`reproduction.weak_model`, 400 pool rows of
   the same seed, the same 400 test rows), so the numbers compare with ``reproduce``'s.
2. **Scoring** (`score_pool`): the pool is scored once with the cheap scoring options set on the command line
   (default ``text_arm="decisive"``, ``ace_capture="generation"``): the "cheap" pool. Budgets and any ranking
   by exact CDE need every row's exact ``rap_cde``, which decisive scoring does not give (``rap_cde`` is a bound
   on rows whose decision settled early, see docs/scoring.md#decisive-scoring); the arms that need it read a
   second pool scored with ``text_arm="full"`` (the "exact" pool, scored only when such an arm has a curve), and
   are charged that run's cost. Scoring costs are measured once and cached with the pool: score on an idle
   machine, or their seconds are inflated (tokens are not).
3. **Arms** (`ARM_SPECS`; rows from the pool of the arm's ``pool``):

   * ``full``: every pool row. ``random``: a seeded random subset of the RAP subset's size. ``oracle``: the
     pool minus its ``text_leak`` rows, by ground-truth ``kind`` (what a perfect CDE could give). Not charged.
   * ``rap``: RAP at the paper's defaults (``RAPConfig()``) on the cheap pool. ``rap_online``: the same subset
     with online RAP. Both are charged the cheap pool's scoring.
   * ``rap_budget``: RAP with a budget, ``RAPConfig(target_ratio=budget_ratio)`` (default 0.25: a quarter of
     the pool, ranked by exact CDE then ACE), on the exact pool, charged the exact pool's scoring.
   * ``pass_rate``: rows with ``0 < rap_acc_mm < 1`` (the LIMR/DAPO-style pass-rate filter, from the
     multimodal rollouts only: no image ablation). Charged only the multimodal arm of the cheap scoring run
     (see `scoring_charge`).
   * Optional variants (not in the default list): ``rap_learnable`` ranks rows by image-grounded learnability
     ``rap_cde * rap_acc_mm * (1 - rap_acc_mm)`` (exact pool) and keeps the RAP subset's size;
     ``passrate_no_text`` keeps the pass-rate band minus the rows the text-only arm solves at least half the
     time (``rap_acc_text >= 0.5``; exact pool, charged its scoring);
     ``cde_passrate`` keeps rows with ``rap_cde >= lambda_c`` and ``0 < rap_acc_mm < 1`` (cheap pool: the
     CDE decision at ``lambda_c`` is settled by decisive scoring). New variants are one `ArmSpec` each.
4. **Curves**: `train_curve` runs `RAPGRPOTrainer` for ``budget_steps`` steps and, through `EvalCallback`,
   evaluates the live model every ``eval_every`` steps and at the last step (greedy pass@1 via
   `reproduction.evaluate_model` on the held-out visual and hard items, with the image and text-only). Step 0
   is the weak start, evaluated once and shared by every run. A point records the *training* compute only:
   cumulative generated tokens (``completions/mean_length`` x completions per step, as
   `reproduction.train_arm` counts them) and training seconds with the evaluation time taken out. The scoring
   cost is kept apart (the JSON's ``scoring`` section) and added when reading out and plotting: total compute
   = scoring + training.
5. **Resumption**: each (split, arm, seed) writes its curve to ``work_dir/curves/{arm}/seed{seed}.json``
   (``seed{seed}.validation.json`` for the validation split) when it finishes, with a key hashing every setting
   it depends on (`run_key`) and a digest of the data it trained on (`data_digest`); a re-run skips curves
   whose key and digest match and re-trains the others. The digest matters when the scoring settings that
   select the same rows in principle (``decisive_waves``, ``prefill``: not in the key) select other rows in
   practice: a curve is never reused for data it did not train on.
6. **Read-outs** (`readouts`, on total compute in generated tokens; see `arm_readouts` for the definitions).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
from reproduction import (
    EVAL_KINDS,
    ArmData,
    _machine,
    eval_dataset,
    evaluate_model,
    grpo_args,
    weak_model,
)

logger = logging.getLogger("rap_hf")

#: Bump when the meaning of a stored curve changes: every stored curve is then re-trained.
CURVE_FORMAT = 1
#: The split the SFT rows are drawn with (`ReferenceRecipe.seed`): a validation split must use another seed.
SFT_SEED = 0
METRICS = ("acc_visual_image", "acc_hard_image", "acc_visual_text", "acc_hard_text")
#: Read-outs are given for these metrics; the first is the primary one (the plot's y axis).
READOUT_METRICS = ("acc_visual_image", "acc_hard_image")
FRACTIONS = (0.25, 0.5, 1.0)
QUICK_ARMS = ["full", "rap", "pass_rate"]


# ----------------------------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class ArmSpec:
    """How one arm gets its rows and what it is charged.

    ``pool``: which scored pool its rows come from, ``"cheap"`` (scored with the configured ``text_arm`` /
    ``ace_capture``) or ``"exact"`` (scored with ``text_arm="full"``, exact CDE for every row).
    ``charge``: what the arm pays before training: ``"none"``, ``"scoring"`` (the whole scoring run of its pool)
    or ``"mm"`` (the multimodal arm of its pool's scoring run only, see `scoring_charge`).
    ``needs_scores``: whether its rows depend on the scores (then the scoring settings are part of its key).
    ``build(pools, seed, config)``: its `ArmData`; ``pools`` maps pool name -> scored dataset.
    """

    label: str
    pool: Literal["cheap", "exact"]
    charge: Literal["none", "scoring", "mm"]
    needs_scores: bool
    build: Callable[[dict[str, datasets.Dataset], int, Any], ArmData]
    default: bool = True


def _valid_rows(scored: datasets.Dataset) -> list[int]:
    """Rows scored without error (all rows when there is no ``rap_error`` column)."""
    if "rap_error" not in scored.column_names:
        return list(range(len(scored)))
    return [i for i, error in enumerate(scored["rap_error"]) if error is None]


def rap_annotated(scored: datasets.Dataset, **selection: Any) -> datasets.Dataset:
    """``scored`` annotated by `select_cognitive_samples` with ``RAPConfig(**selection)``."""
    from rap_hf import RAPConfig, select_cognitive_samples

    return select_cognitive_samples(scored, RAPConfig(**selection))


def rap_size(scored: datasets.Dataset) -> int:
    """Rows RAP selects at the paper's defaults."""
    from rap_hf.selection import SELECTED_COLUMN

    return int(sum(rap_annotated(scored)[SELECTED_COLUMN]))


def _selected_arm(annotated: datasets.Dataset, online: bool = False) -> ArmData:
    from rap_hf.selection import SELECTED_COLUMN, stage_counts

    size = int(sum(annotated[SELECTED_COLUMN]))
    return ArmData(annotated, "selected", online, size, stage_counts(annotated))


def _subset_arm(scored: datasets.Dataset, rows: Sequence[int]) -> ArmData:
    rows = sorted(int(i) for i in rows)
    return ArmData(scored.select(rows), "as_is", False, len(rows))


def full_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    scored = pools["cheap"]
    return ArmData(scored, "all", False, len(scored))


def random_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    """A random subset of the RAP subset's size, drawn from the whole pool with this run's seed (as
    `reproduction.arm_data` draws it)."""
    scored = pools["cheap"]
    size = rap_size(scored)
    return ArmData(scored.shuffle(seed=seed).select(range(size)), "as_is", False, size)


def rap_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    return _selected_arm(rap_annotated(pools["cheap"]))


def rap_online_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    return _selected_arm(rap_annotated(pools["cheap"]), online=True)


def rap_budget_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    """RAP with ``target_ratio=config.budget_ratio`` (a budget ranks by exact CDE: the exact pool)."""
    return _selected_arm(rap_annotated(pools["exact"], target_ratio=config.budget_ratio))


def pass_rate_rows(scored: datasets.Dataset) -> list[int]:
    """Rows with ``0 < rap_acc_mm < 1`` (and no scoring error): the pass-rate filter."""
    valid = set(_valid_rows(scored))
    acc = scored["rap_acc_mm"]
    return [i for i in range(len(scored)) if i in valid and acc[i] is not None and 0.0 < acc[i] < 1.0]


def pass_rate_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    return _subset_arm(pools["cheap"], pass_rate_rows(pools["cheap"]))


def oracle_rows(scored: datasets.Dataset) -> list[int]:
    """Every row whose ground-truth ``kind`` is not ``text_leak``."""
    return [i for i, kind in enumerate(scored["kind"]) if kind != "text_leak"]


def oracle_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    return _subset_arm(pools["cheap"], oracle_rows(pools["cheap"]))


def _require_exact(scored: datasets.Dataset, what: str, column: str) -> None:
    """Raise unless every row's text-only arm ran in full (no ``rap_cde_bound``): ``what`` reads ``column``."""
    if "rap_cde_bound" in scored.column_names and any(b for b in scored["rap_cde_bound"] if b == b and b):
        raise ValueError(f"{what} needs exact {column}: score the pool with text_arm='full'")


def learnable_rows(scored: datasets.Dataset, size: int) -> list[int]:
    """The ``size`` rows ranked first by ``rap_cde * rap_acc_mm * (1 - rap_acc_mm)`` (descending; ties by
    ``rap_cde`` descending, then row index), among rows scored without error. Needs exact ``rap_cde``."""
    _require_exact(scored, "learnable ranking", "rap_cde")
    cde, acc = scored["rap_cde"], scored["rap_acc_mm"]
    valid = [i for i in _valid_rows(scored) if not math.isnan(cde[i])]
    ranked = sorted(valid, key=lambda i: (-(cde[i] * acc[i] * (1.0 - acc[i])), -cde[i], i))
    return sorted(ranked[:size])


def rap_learnable_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    return _subset_arm(pools["exact"], learnable_rows(pools["exact"], rap_size(pools["cheap"])))


def cde_passrate_rows(scored: datasets.Dataset, lambda_c: float = 0.5) -> list[int]:
    """Rows with ``rap_cde >= lambda_c`` (the CDE filter, as selection compares) and ``0 < rap_acc_mm < 1``.

    On decisive scores ``rap_cde`` is a bound on the side of its decision at the scoring threshold, so the
    comparison is exact at that threshold (the default 0.5)."""
    from rap_hf.estimators.cde import cde_at_least

    cde = scored["rap_cde"]
    return [i for i in pass_rate_rows(scored) if bool(cde_at_least(float(cde[i]), lambda_c))]


def cde_passrate_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    return _subset_arm(pools["cheap"], cde_passrate_rows(pools["cheap"]))


def passrate_no_text_rows(scored: datasets.Dataset, text_max: float = 0.5) -> list[int]:
    """Rows of the pass-rate band (``0 < rap_acc_mm < 1``) whose text-only arm fails at least half of its
    rollouts (``rap_acc_text < text_max``): the image ablation used only to drop rows the text alone answers,
    without CDE's ``acc_mm >= lambda_c``. Needs exact ``rap_acc_text`` (decisive scoring skips the text arm of
    exactly the rows with a low ``acc_mm``)."""
    _require_exact(scored, "the no-text filter", "rap_acc_text")
    acc_text = scored["rap_acc_text"]
    return [i for i in pass_rate_rows(scored) if acc_text[i] == acc_text[i] and acc_text[i] < text_max]


def passrate_no_text_arm(pools: dict[str, datasets.Dataset], seed: int, config: Any) -> ArmData:
    return _subset_arm(pools["exact"], passrate_no_text_rows(pools["exact"]))


ARM_SPECS: dict[str, ArmSpec] = {
    "full": ArmSpec("full pool", "cheap", "none", False, full_arm),
    "random": ArmSpec("random subset (RAP size)", "cheap", "none", True, random_arm),
    "rap": ArmSpec("RAP (paper defaults)", "cheap", "scoring", True, rap_arm),
    "rap_budget": ArmSpec("RAP, budget", "exact", "scoring", True, rap_budget_arm),
    "pass_rate": ArmSpec("pass-rate 0<acc_mm<1", "cheap", "mm", True, pass_rate_arm),
    "oracle": ArmSpec("oracle: no text_leak", "cheap", "none", False, oracle_arm),
    "rap_online": ArmSpec("RAP + online", "cheap", "scoring", True, rap_online_arm),
    "rap_learnable": ArmSpec(
        "variant: cde*acc*(1-acc), RAP size", "exact", "scoring", True, rap_learnable_arm, default=False
    ),
    "cde_passrate": ArmSpec(
        "variant: CDE filter + 0<acc_mm<1", "cheap", "scoring", True, cde_passrate_arm, default=False
    ),
    "passrate_no_text": ArmSpec(
        "variant: 0<acc_mm<1 + acc_text<0.5", "exact", "scoring", True, passrate_no_text_arm, default=False
    ),
}
DEFAULT_ARMS = [name for name, spec in ARM_SPECS.items() if spec.default]


# ----------------------------------------------------------------------------------------------- config


@dataclass
class CurvesConfig:
    """Settings of the compute-curve benchmark.

    Time budget of the defaults, measured on an otherwise idle 2-core CPU (the machine `_machine` names in the
    JSON): one (arm, seed) run is 200 GRPO steps (2 passes over the 400-row pool, 4 prompts x 8 generations, at
    most 40 new tokens: 104 s) plus 10 evaluations of the 204 held-out visual and hard items with the image and
    text-only (5.5 s each: 55 s), plus the trainer's set-up: about 165 s. 7 arms x 3 seeds = 21 runs: about
    58 min; plus scoring the pool twice (decisive 23.5 s, full about 25 s) and the step-0 evaluation: about 60
    min, and 7 min more for the weak start's SFT when it is not cached. Another job on the same 2 cores can
    double that (steps and evaluations slowed down 2-10x while one ran).
    """

    output_dir: str = field(
        default="benchmarks/results", metadata={"help": "Where compute_curves.{json,md,png} are written."}
    )
    work_dir: str = field(
        default="rap_outputs/compute_curves",
        metadata={
            "help": "Cache: weak model, scored pools, step-0 evaluation and one file per finished curve."
        },
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Training seeds."})
    arms: list[str] = field(
        default_factory=lambda: list(DEFAULT_ARMS),
        metadata={"help": f"Arms to run, of {tuple(ARM_SPECS)} (the last two are optional variants)."},
    )
    split: Literal["test", "validation"] = field(
        default="test",
        metadata={
            "help": "'test': evaluate on the held-out test split (as reproduce does). 'validation': on visual and "
            "hard rows of visual-arith's train split drawn with --validation_seed (neither the SFT's nor the "
            "pool's seed), to choose among variants without looking at test. Curves are stored per split."
        },
    )
    validation_seed: int = field(
        default=2, metadata={"help": "Seed of the validation rows (SFT rows use 0, the pool --pool_seed)."}
    )
    start_model: str | None = field(
        default=None, metadata={"help": "Start from this model instead of the weak checkpoint."}
    )
    weak_sft_steps: int = field(default=250, metadata={"help": "SFT steps of the weak starting checkpoint."})
    pool_rows: int = field(
        default=400, metadata={"help": "visual-arith train rows in the pool (as reproduce)."}
    )
    pool_seed: int = field(default=1, metadata={"help": "Seed of the pool rows (the SFT rows use seed 0)."})
    eval_rows: int = field(
        default=400,
        metadata={
            "help": "Rows drawn for evaluation; their visual and hard ones (about half) are evaluated. 400: the "
            "test items of reproduce."
        },
    )
    num_rollouts: int = field(default=5, metadata={"help": "RAP scoring rollouts per arm (M)."})
    max_new_tokens: int = field(
        default=40, metadata={"help": "Max new tokens for scoring, training and evaluation."}
    )
    text_arm: Literal["full", "decisive"] = field(
        default="decisive",
        metadata={"help": "RAP scoring's text_arm for the cheap pool (what RAP is charged for)."},
    )
    ace_capture: Literal["generation", "second_pass"] = field(
        default="generation", metadata={"help": "RAP scoring's ace_capture (both pools)."}
    )
    decisive_waves: int = field(
        default=1,
        metadata={
            "help": "RAP scoring's decisive_waves for the cheap pool. 1 (the library's default and the cheap "
            "settings docs/scoring.md recommends): fewer seconds than 2, more text-only tokens."
        },
    )
    prefill: Literal["per_rollout", "shared"] = field(
        default="shared",
        metadata={
            "help": "RAP scoring's prefill (both pools). 'shared' (recommended with the cheap settings): one "
            "prefill per row, its cache expanded to the rollouts."
        },
    )
    budget_ratio: float = field(
        default=0.25, metadata={"help": "rap_budget's RAPConfig.target_ratio: this fraction of the pool."}
    )
    passes: float = field(
        default=2.0, metadata={"help": "Training budget in passes over the full pool (when budget_steps=0)."}
    )
    budget_steps: int = field(
        default=0,
        metadata={"help": "GRPO steps of every arm; 0: ceil(passes * pool_rows / prompts_per_step)."},
    )
    eval_every: int = field(default=20, metadata={"help": "Evaluate every this many steps (and at the end)."})
    prompts_per_step: int = field(default=4, metadata={"help": "Prompts per GRPO step."})
    num_generations: int = field(default=8, metadata={"help": "GRPO group size."})
    learning_rate: float = field(default=5e-5, metadata={"help": "GRPO learning rate (as reproduce)."})
    temperature: float = field(default=1.0, metadata={"help": "GRPO sampling temperature."})
    quick: bool = field(
        default=False,
        metadata={
            "help": "Smoke run (about 1.5 min on an idle 2-core CPU): the shipped reference model, a 64-row pool, 32 steps, 1 seed, "
            f"arms {QUICK_ARMS}; flags you set yourself are kept. Not a result."
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "Recompute everything, cached or not."})

    def apply_quick(self) -> None:
        """With ``quick``, replace the fields still at their defaults by the smoke-run values."""
        if not self.quick:
            return
        quick = {
            "work_dir": "rap_outputs/compute_curves_quick",
            "seeds": [0],
            "arms": list(QUICK_ARMS),
            "pool_rows": 64,
            "eval_rows": 100,
            "num_rollouts": 3,
            "eval_every": 8,
        }
        defaults = CurvesConfig()
        for name, value in quick.items():
            if getattr(self, name) == getattr(defaults, name):
                setattr(self, name, value)
        if self.start_model is None:
            from rap_hf.demo.reference_model import reference_model_path

            self.start_model = str(reference_model_path())

    def steps(self) -> int:
        """The GRPO steps every arm trains for."""
        if self.budget_steps > 0:
            return self.budget_steps
        return max(1, math.ceil(self.passes * self.pool_rows / self.prompts_per_step))

    def epoch_steps(self) -> int:
        """Steps of one pass of the full pool (the reference one-epoch compute)."""
        return max(1, math.ceil(self.pool_rows / self.prompts_per_step))

    def validate(self) -> None:
        unknown = set(self.arms) - set(ARM_SPECS)
        if unknown:
            raise ValueError(f"unknown arms {sorted(unknown)}; arms are {tuple(ARM_SPECS)}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.pool_rows < self.prompts_per_step:
            raise ValueError("pool_rows must be at least prompts_per_step")
        if self.eval_every < 1:
            raise ValueError("eval_every must be >= 1")
        if self.split == "validation" and self.validation_seed in (SFT_SEED, self.pool_seed):
            raise ValueError(
                f"validation_seed {self.validation_seed} is the SFT's ({SFT_SEED}) or the pool's "
                f"({self.pool_seed}) seed: pick another so validation rows are not training rows"
            )
        if not 0 < self.budget_ratio <= 1:
            raise ValueError("budget_ratio must be in (0, 1]")

    def eval_steps(self) -> list[int]:
        """The steps evaluated after step 0: every ``eval_every`` and the last."""
        last = self.steps()
        return sorted({*range(self.eval_every, last + 1, self.eval_every), last})


def run_key(config: CurvesConfig, arm: str, seed: int, split: str) -> str:
    """Hash of every setting the (arm, seed, split) curve depends on: a stored curve is reused only when equal."""
    spec = ARM_SPECS[arm]
    settings: dict[str, Any] = {
        "format": CURVE_FORMAT,
        "arm": arm,
        "seed": seed,
        "split": split,
        "start_model": config.start_model,
        "weak_sft_steps": None if config.start_model else config.weak_sft_steps,
        "pool_rows": config.pool_rows,
        "pool_seed": config.pool_seed,
        "eval_rows": config.eval_rows,
        "max_new_tokens": config.max_new_tokens,
        "steps": config.steps(),
        "eval_every": config.eval_every,
        "prompts_per_step": config.prompts_per_step,
        "num_generations": config.num_generations,
        "learning_rate": config.learning_rate,
        "temperature": config.temperature,
    }
    if split == "validation":
        settings["validation_seed"] = config.validation_seed
    if spec.needs_scores:
        settings.update(num_rollouts=config.num_rollouts, ace_capture=config.ace_capture)
        # The exact pool is always scored with text_arm="full"; random and the learnable variant also use
        # the RAP size from the cheap pool.
        settings["text_arm"] = config.text_arm
    if arm == "rap_budget":
        settings["budget_ratio"] = config.budget_ratio
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def curve_path(config: CurvesConfig, arm: str, seed: int, split: str) -> Path:
    suffix = "" if split == "test" else f".{split}"
    return Path(config.work_dir) / "curves" / arm / f"seed{seed}{suffix}.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and `os.replace` (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the results unreadable to others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def stored_seeds(config: CurvesConfig, arm: str, split: str) -> list[int]:
    """Seeds with a stored curve file of (arm, split), whatever its key."""
    folder = Path(config.work_dir) / "curves" / arm
    suffix = ".json" if split == "test" else f".{split}.json"
    seeds = []
    for path in folder.glob("seed*.json") if folder.exists() else []:
        number = path.name[len("seed") : -len(suffix)] if path.name.endswith(suffix) else ""
        if number.isdigit():
            seeds.append(int(number))
    return sorted(seeds)


def load_curve(config: CurvesConfig, arm: str, seed: int, split: str) -> dict[str, Any] | None:
    """The stored curve of (arm, seed, split) if its key matches the current settings, else None."""
    path = curve_path(config, arm, seed, split)
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stored if stored.get("key") == run_key(config, arm, seed, split) else None


# ----------------------------------------------------------------------------------------------- stages


def evaluation_set(config: CurvesConfig) -> datasets.Dataset:
    """The evaluation items of ``config.split``: `visual` and `hard` rows of the test split
    (`reproduction.eval_dataset`), or of a validation draw of the train split (``validation_seed``)."""
    if config.split == "test":
        return eval_dataset(config)
    from rap_hf.demo.visual_arith import visual_arith

    rows = visual_arith("train", config.eval_rows, seed=config.validation_seed)
    return rows.filter(lambda kind: kind in EVAL_KINDS, input_columns="kind").remove_columns(
        ["reference_completion"]
    )


def evaluate(model: Path | str, evaluation: datasets.Dataset, config: CurvesConfig) -> dict[str, float]:
    """Greedy pass@1 of ``model`` (a saved folder) through `reproduction.evaluate_model`, as curve metrics."""
    scores = evaluate_model(model, evaluation, config)
    result = {
        f"acc_{kind}_{arm}": float(scores[f"{kind}_{arm}"])
        for kind in EVAL_KINDS
        for arm in ("image", "text")
    }
    result["eval_seconds"] = scores["seconds"]
    return result


def baseline_point(config: CurvesConfig, model: Path, evaluation: datasets.Dataset) -> dict[str, Any]:
    """Step 0 of every curve: the weak start, evaluated once per split (cached)."""
    key = json.dumps(
        [
            str(Path(model).resolve()),
            config.split,
            config.eval_rows,
            config.validation_seed,
            config.max_new_tokens,
        ]
    )
    path = Path(config.work_dir) / f"step0_{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    if not config.overwrite and path.exists():
        return json.loads(path.read_text())
    scores = evaluate(model, evaluation, config)
    point = {"step": 0, "generated_tokens": 0, "seconds": 0.0, **{m: scores[m] for m in METRICS}}
    write_json_atomic(path, point)
    return point


def score_pool(config: CurvesConfig, model: Path, text_arm: str) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Score the pool with RAP on ``model`` with ``text_arm`` and ``config``'s scoring options (cached with its
    cost).

    Like `reproduction.score_pool`, plus the scoring options and the per-arm cost split (``ScoringStats``)."""
    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.visual_arith import visual_arith

    rap_config = RAPConfig(
        num_rollouts=config.num_rollouts,
        max_new_tokens=config.max_new_tokens,
        seed=0,
        text_arm=text_arm,
        ace_capture=config.ace_capture,
        decisive_waves=config.decisive_waves,
        prefill=config.prefill,
    )
    key = json.dumps(
        [
            str(Path(model).resolve()),
            config.pool_rows,
            config.pool_seed,
            rap_config.scoring().fingerprint_values(),
        ],
        sort_keys=True,
        default=str,
    )
    path = Path(config.work_dir) / f"pool_{text_arm}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    cost_file = path / "cost.json"
    if not config.overwrite and cost_file.exists():
        return datasets.load_from_disk(str(path / "scored")), json.loads(cost_file.read_text())
    pool = visual_arith("train", config.pool_rows, seed=config.pool_seed).remove_columns(
        ["reference_completion"]
    )
    flt = RAPDataFilter(str(model), config=rap_config)
    start = time.perf_counter()
    scored = flt.score(pool, desc=f"RAP scoring the pool (text_arm={text_arm})")
    seconds = time.perf_counter() - start
    stats = flt.stats
    valid = _valid_rows(scored)
    text_rollouts = (
        scored["rap_text_rollouts"]
        if "rap_text_rollouts" in scored.column_names
        else [config.num_rollouts] * len(scored)
    )
    cost = {
        "seconds": seconds,
        "generated_tokens": int(stats.generated_tokens),
        "rows": len(pool),
        "text_arm": text_arm,
        "ace_capture": config.ace_capture,
        "decisive_waves": config.decisive_waves,
        "prefill": config.prefill,
        "generated_tokens_by_arm": {k: int(v) for k, v in stats.generated_tokens_by_arm.items()},
        "seconds_generation_by_arm": dict(stats.seconds_generation_by_arm),
        "seconds_rewards": stats.seconds_rewards,
        "seconds_attention": stats.seconds_attention,
        "mm_rollouts": len(valid) * config.num_rollouts,
        "text_rollouts": int(sum(text_rollouts[i] or 0 for i in valid)),
    }
    if path.exists():
        shutil.rmtree(path)
    scored.save_to_disk(str(path / "scored"))
    write_json_atomic(cost_file, cost)
    return datasets.load_from_disk(str(path / "scored")), cost


# ----------------------------------------------------------------------------------------------- compute


def scoring_charge(arm: str, costs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``arm`` pays before training, from the scoring runs' costs (``costs[pool]``, see `score_pool`).

    * ``"none"`` (full, random, oracle): nothing.
    * ``"scoring"``: its pool's whole scoring run: every generated token, wall-clock seconds of ``score``.
    * ``"mm"`` (pass_rate, which reads only ``rap_acc_mm``): the multimodal arm of its pool's run: its
      generated tokens (``generated_tokens_by_arm["mm"]``) and generation seconds
      (``seconds_generation_by_arm["mm"]``), plus the multimodal share of the reward seconds
      (``mm_rollouts / (mm_rollouts + text_rollouts)``: rewards are one call per arm and cost per completion).
      Not charged: the text-only arm, ACE (``seconds_attention``) and the rest of the run's wall clock (data
      loading, ``datasets.map``); the multimodal generation seconds still include in-generation ACE capture
      when ``ace_capture="generation"`` (one extra decoding step), which a pass-rate filter would not need.
    """
    spec = ARM_SPECS[arm]
    if spec.charge == "none":
        return {"generated_tokens": 0, "seconds": 0.0}
    cost = costs[spec.pool]
    if spec.charge == "scoring":
        return {"generated_tokens": int(cost["generated_tokens"]), "seconds": float(cost["seconds"])}
    mm, text = cost["mm_rollouts"], cost["text_rollouts"]
    share = mm / (mm + text) if mm + text else 1.0
    return {
        "generated_tokens": int(cost["generated_tokens_by_arm"].get("mm", 0)),
        "seconds": float(cost["seconds_generation_by_arm"].get("mm", 0.0) + share * cost["seconds_rewards"]),
    }


def interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """Linear interpolation of the curve (``xs`` increasing) at ``x``; None outside [xs[0], xs[-1]]."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    for i in range(1, len(xs)):
        if x <= xs[i]:
            x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
            return y1 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[0]  # a single point, x == xs[0]


def compute_to_reach(xs: Sequence[float], ys: Sequence[float], target: float) -> float | None:
    """The compute at which the curve first reaches ``target``: ``xs[0]`` when it starts at or above it, else
    the linear interpolation inside the first segment that crosses it; None when it never does."""
    if not xs:
        return None
    if ys[0] >= target:
        return float(xs[0])
    for i in range(1, len(xs)):
        if ys[i] >= target:
            x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
    return None


def area_under_curve(xs: Sequence[float], ys: Sequence[float], x_end: float) -> float:
    """Mean accuracy over the compute window [0, ``x_end``] (the trapezoid area divided by ``x_end``).

    Before the curve's first point (an arm still paying its scoring cost) the accuracy is held at the first
    point's value (step 0: the weak start); after its last point, at the last value; past ``x_end`` the curve is
    cut (interpolated at ``x_end``). So it is in [0, 1], and an arm that pays more before training, or learns
    later, scores lower.
    """
    if x_end <= 0:
        raise ValueError("x_end must be > 0")

    def value(x: float) -> float:
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        return interpolate(xs, ys, x)  # type: ignore[return-value]

    points = [(0.0, value(0.0))]
    points += [(float(x), float(y)) for x, y in zip(xs, ys, strict=True) if 0.0 < x < x_end]
    points.append((float(x_end), value(x_end)))
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False))
    return area / x_end


def total_curve(
    points: list[dict[str, Any]], charge: dict[str, Any], metric: str, axis: str = "generated_tokens"
) -> tuple[list[float], list[float]]:
    """(total compute, accuracy) of a stored curve: training ``axis`` plus the arm's scoring charge."""
    ordered = sorted(points, key=lambda p: p["step"])
    return [charge[axis] + p[axis] for p in ordered], [p[metric] for p in ordered]


# ----------------------------------------------------------------------------------------------- training


def make_eval_callback(
    eval_steps: Sequence[int], evaluate_fn: Callable[[Path], dict[str, float]], scratch: Path
) -> Any:
    """A `TrainerCallback` that, at ``on_step_end`` of every step in ``eval_steps``, saves the live model and
    its processor to ``scratch`` and evaluates that folder with ``evaluate_fn``. Its ``points`` get one
    ``{"step", "seconds", metric...}`` per evaluation, ``seconds`` = training seconds since ``on_train_begin``
    without the evaluations (saving included). The RNG states are restored after each evaluation, so
    evaluating does not change the training run.

    Saving and reloading the reference-size model costs about 0.08 s per evaluation (measured), within the noise
    of evaluating the in-memory model, and leaves the trainer's model and processor untouched (scoring puts a
    model it loads in eval mode), so the evaluation reads a saved copy, as `reproduction` evaluates a saved arm."""
    import numpy as np
    import torch
    from transformers import TrainerCallback

    class EvalCallback(TrainerCallback):
        def __init__(self) -> None:
            self.steps = set(eval_steps)
            self.points: list[dict[str, Any]] = []
            self.eval_seconds = 0.0
            self.start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()
            self.eval_seconds = 0.0

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            if state.global_step not in self.steps:
                return
            begin = time.perf_counter()
            train_seconds = begin - self.start - self.eval_seconds
            cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
            rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
            was_training = model.training
            shutil.rmtree(scratch, ignore_errors=True)
            model.save_pretrained(scratch)
            processing_class.save_pretrained(scratch)
            scores = evaluate_fn(scratch)
            model.train(was_training)
            random.setstate(rng[0])
            np.random.set_state(rng[1])
            torch.set_rng_state(rng[2])
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)
            self.eval_seconds += time.perf_counter() - begin
            self.points.append({"step": state.global_step, "seconds": train_seconds, **scores})

    return EvalCallback()


def cumulative_tokens(log_history: list[dict[str, Any]], batch: int) -> dict[int, int]:
    """Step -> generated tokens up to and including that step, from TRL's per-step logs."""
    total, out = 0.0, {}
    for entry in sorted(
        (e for e in log_history if "completions/mean_length" in e), key=lambda e: e.get("step", 0)
    ):
        total += entry["completions/mean_length"] * batch
        out[int(entry["step"])] = int(round(total))
    return out


def train_curve(
    config: CurvesConfig,
    model: Path,
    data: ArmData,
    seed: int,
    evaluation: datasets.Dataset,
    scratch: Path,
) -> dict[str, Any]:
    """GRPO on one arm's data for ``config.steps()`` steps, evaluated along the way (see `make_eval_callback`).

    Returns ``{"points": [...], "train_log": [...], "train_seconds", "eval_seconds"}``; the points lack step 0
    (the shared weak start)."""
    from rap_hf import RAPGRPOTrainer

    batch = config.prompts_per_step * config.num_generations
    args = grpo_args(config, data, seed, scratch / "trainer", config.steps())
    callback = make_eval_callback(
        config.eval_steps(), lambda folder: evaluate(folder, evaluation, config), scratch / "eval_model"
    )
    trainer = RAPGRPOTrainer(model=str(model), args=args, train_dataset=data.dataset, callbacks=[callback])
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    tokens = cumulative_tokens(trainer.state.log_history, batch)
    points = []
    for point in callback.points:
        known = [s for s in tokens if s <= point["step"]]
        points.append(
            {
                "step": point["step"],
                "generated_tokens": tokens[max(known)] if known else 0,
                "seconds": point["seconds"],
                **{m: point[m] for m in METRICS},
            }
        )
    train_log = [
        {
            "step": int(e["step"]),
            "mean_length": e["completions/mean_length"],
            "reward": e.get("rewards/accuracy_reward/mean"),
            "frac_reward_zero_std": e.get("frac_reward_zero_std"),
        }
        for e in trainer.state.log_history
        if "completions/mean_length" in e
    ]
    del trainer
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "points": points,
        "train_log": train_log,
        "train_seconds": wall - callback.eval_seconds,
        "eval_seconds": callback.eval_seconds,
    }


def kinds_of(data: ArmData) -> dict[str, int]:
    """Ground-truth kind counts of an arm's (initial) training rows."""
    from rap_hf.selection import SELECTED_COLUMN

    kinds = data.dataset["kind"]
    if data.train_on == "selected":
        kinds = [k for k, s in zip(kinds, data.dataset[SELECTED_COLUMN], strict=True) if s]
    return _count(kinds)


def data_digest(data: ArmData) -> str:
    """Hash of what an arm's training reads from its data, to tell whether a stored curve trained on it.

    The rows' content (every column but images, which the pool's settings in `run_key` fix, and the ``rap_*``
    score columns), then what its mode reads of the scores: the selection flag when it trains on the selected
    rows, and the pass rate and CDE that order online RAP's reserve (`rap_hf.training.online.build_reserve`).
    """
    from rap_hf.explorer.hub_source import image_columns
    from rap_hf.selection import SELECTED_COLUMN

    images = set(image_columns(data.dataset.features))
    columns = [c for c in data.dataset.column_names if not c.startswith("rap_") and c not in images]
    if data.train_on == "selected":
        columns.append(SELECTED_COLUMN)
    if data.online:
        columns += ["rap_acc_mm", "rap_cde"]
    payload = {
        "train_on": data.train_on,
        "online": data.online,
        "rows": data.rows,
        # Plain lists (`dataset[c]` is a lazy Column whose str() shows 5 values); no `default=str` either, so a
        # value JSON cannot write fails here instead of hashing a truncated repr.
        "columns": data.dataset.select_columns(columns).to_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class ArmDigests:
    """`data_digest` of each (arm, seed) on the current pools, computed once per run."""

    def __init__(self, pools: dict[str, datasets.Dataset], config: CurvesConfig):
        self.pools, self.config = pools, config
        self._digests: dict[tuple[str, int], str] = {}

    def __call__(self, arm: str, seed: int) -> str:
        if (arm, seed) not in self._digests:
            self._digests[arm, seed] = data_digest(ARM_SPECS[arm].build(self.pools, seed, self.config))
        return self._digests[arm, seed]


def reusable_curve(
    config: CurvesConfig, arm: str, seed: int, split: str, digests: ArmDigests
) -> dict[str, Any] | None:
    """The stored curve of (arm, seed, split) if its key matches the settings *and* it trained on the data the
    current pools give the arm (its ``data_digest``; a curve stored without one is never reused), else None."""
    stored = load_curve(config, arm, seed, split)
    if stored is None:
        return None
    if stored.get("data_digest") != digests(arm, seed):
        logger.warning(
            "stored curve %s seed %d (%s) trained on other data (rows, or scores its mode reads) than the current "
            "pools give it: not reused",
            arm,
            seed,
            split,
        )
        return None
    return stored


def _count(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


# ----------------------------------------------------------------------------------------------- run


def pools_needed(arms: Sequence[str], text_arm: str) -> list[str]:
    """The pools the arms read (``"exact"`` is the cheap pool itself when ``text_arm="full"``)."""
    needed = {ARM_SPECS[a].pool for a in arms}
    needed.add("cheap")  # every arm's rows (and RAP's size) come from the cheap pool
    if text_arm == "full":
        needed.discard("exact")
    return sorted(needed)


def run_curves(config: CurvesConfig) -> dict[str, Any]:
    """Train (or reuse) every (arm, seed) of ``config``, write the JSON, table and plot, return the results."""
    config.apply_quick()
    config.validate()
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Score every pool an arm with a curve needs (this run's arms and stored ones, whose charge is read out)
    # first: a stored curve is reused only if it trained on the rows the current pools give its arm.
    arms_seen = set(config.arms) | {
        arm
        for arm in ARM_SPECS
        for split in ("test", "validation")
        for seed in stored_seeds(config, arm, split)
        if load_curve(config, arm, seed, split) is not None
    }
    model, _ = weak_model(config)
    pools: dict[str, datasets.Dataset] = {}
    costs: dict[str, dict[str, Any]] = {}
    for name in pools_needed(sorted(arms_seen), config.text_arm):
        pools[name], costs[name] = score_pool(config, model, config.text_arm if name == "cheap" else "full")
    if config.text_arm == "full":  # the cheap pool is already exact
        pools["exact"], costs["exact"] = pools["cheap"], costs["cheap"]
    digests = ArmDigests(pools, config)
    todo = [
        (arm, seed)
        for seed in config.seeds
        for arm in config.arms
        if config.overwrite or reusable_curve(config, arm, seed, config.split, digests) is None
    ]
    logger.info("%d of %d curves to train", len(todo), len(config.seeds) * len(config.arms))
    evaluation = evaluation_set(config) if todo else None
    start_point = baseline_point(config, model, evaluation) if todo else None
    for arm, seed in todo:
        data = ARM_SPECS[arm].build(pools, seed, config)
        key = run_key(config, arm, seed, config.split)
        record: dict[str, Any] = {
            "key": key,
            "arm": arm,
            "seed": seed,
            "split": config.split,
            "rows": data.rows,
            "data_digest": data_digest(data),
            "kinds": kinds_of(data),
            "stage_counts": data.stage_counts,
            "steps": config.steps(),
        }
        if data.rows < config.prompts_per_step:
            logger.warning("arm %s seed %d has %d rows (< prompts per step): skipped", arm, seed, data.rows)
            record.update(skipped=f"{data.rows} rows, fewer than {config.prompts_per_step} prompts per step")
        else:
            logger.info("arm %s seed %d: %d rows, %d steps", arm, seed, data.rows, config.steps())
            result = train_curve(
                config, model, data, seed, evaluation, work / "scratch" / f"{arm}_seed{seed}"
            )
            record.update(result)
            record["points"] = [start_point, *result["points"]]
        write_json_atomic(curve_path(config, arm, seed, config.split), record)
    results = collect_results(config, costs, digests, _count(pools["cheap"]["kind"]))
    results["wall_seconds"] = time.perf_counter() - started
    results["outputs"] = {k: str(v) for k, v in write_outputs(results, Path(config.output_dir)).items()}
    return results


def collect_results(
    config: CurvesConfig,
    costs: dict[str, dict[str, Any]],
    digests: ArmDigests,
    pool_kinds: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Every stored curve that `reusable_curve` accepts (key and data digest), for both splits, with read-outs."""
    results: dict[str, Any] = {
        "config": asdict(config),
        "arms": {},
        "scoring": {arm: scoring_charge(arm, costs) for arm in ARM_SPECS if ARM_SPECS[arm].pool in costs},
        "pool_kinds": pool_kinds,
        "scoring_runs": costs,
        "subsets": {},
        "train_logs": {},
        "machine": _machine(),
    }
    for split, section in (("test", "arms"), ("validation", "validation")):
        curves: dict[str, dict[str, Any]] = {}
        for arm in ARM_SPECS:
            for seed in stored_seeds(config, arm, split):
                stored = reusable_curve(config, arm, seed, split, digests)
                if stored is not None:
                    curves.setdefault(arm, {})[seed] = stored
        if not curves:
            continue
        results[section] = {
            arm: {"seeds": {str(s): r["points"] for s, r in runs.items() if "points" in r}}
            for arm, runs in curves.items()
        }
        results[f"readouts_{split}" if split != "test" else "readouts"] = readouts(
            results[section], results["scoring"], config.epoch_steps()
        )
        results["subsets" if split == "test" else "subsets_validation"] = {
            arm: {
                str(s): {"rows": r["rows"], "kinds": r["kinds"], "skipped": r.get("skipped")}
                for s, r in runs.items()
            }
            for arm, runs in curves.items()
        }
        results["train_logs" if split == "test" else "train_logs_validation"] = {
            arm: {
                str(s): {
                    "train_seconds": r.get("train_seconds"),
                    "eval_seconds": r.get("eval_seconds"),
                    "mean_frac_reward_zero_std": _mean_of(r.get("train_log", []), "frac_reward_zero_std"),
                    "mean_reward": _mean_of(r.get("train_log", []), "reward"),
                }
                for s, r in runs.items()
            }
            for arm, runs in curves.items()
        }
    results.setdefault("arms", {})
    choice = choose_variant(results)
    if choice is not None:
        results["variant_choice"] = choice
    return results


def choose_variant(results: dict[str, Any], metric: str = READOUT_METRICS[0]) -> dict[str, Any] | None:
    """The variant chosen on the validation split, by a rule fixed before looking at any result.

    Candidates: the optional arms (``ArmSpec.default=False``) with validation curves. Each seed's validation
    curve is read on total compute (its scoring charge + training tokens) and scored by `area_under_curve`
    on [0, F], F = full's end compute on the test split (every arm trains the same budget, so F is the same
    window). The winner has the highest mean AUC over its seeds; ties go to the higher mean final accuracy, then
    to the name. None without candidates or without full's test curves (no F).
    """
    reference = results.get("readouts", {}).get("full_reference")
    candidates = [arm for arm in results.get("validation", {}) if not ARM_SPECS[arm].default]
    if not candidates or reference is None:
        return None
    x_end = reference["generated_tokens"]["end"]
    scores: dict[str, Any] = {}
    for arm in candidates:
        runs = list(results["validation"][arm]["seeds"].values())
        charge = results["scoring"][arm]
        scores[arm] = {
            "seeds": len(runs),
            "auc": _stats([area_under_curve(*total_curve(p, charge, metric), x_end) for p in runs]),
            "final": _stats([sorted(p, key=lambda q: q["step"])[-1][metric] for p in runs]),
        }
    winner = max(candidates, key=lambda a: (scores[a]["auc"]["mean"], scores[a]["final"]["mean"], a))
    return {"metric": metric, "x_end_tokens": x_end, "scores": scores, "winner": winner}


def _mean_of(log: list[dict[str, Any]], key: str) -> float | None:
    values = [e[key] for e in log if e.get(key) is not None]
    return statistics.fmean(values) if values else None


# ----------------------------------------------------------------------------------------------- read-outs


def _stats(values: list[float]) -> dict[str, Any]:
    """mean, std (sample, 0 for one value) and n of the values that exist."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return {"mean": None, "std": None, "n": 0, "of": len(values)}
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return {"mean": statistics.fmean(present), "std": std, "n": len(present), "of": len(values)}


def readouts(
    arms: dict[str, dict[str, Any]], charges: dict[str, dict[str, Any]], epoch_steps: int
) -> dict[str, Any]:
    """Read-outs of every arm against ``full`` (needs full's curves; see `arm_readouts`)."""
    full = arms.get("full", {}).get("seeds", {})
    if not full:
        return {"note": "no full-pool curves: nothing to compare with"}
    reference: dict[str, Any] = {}
    for axis in ("generated_tokens", "seconds"):
        epoch, end = [], []
        for points in full.values():
            ordered = sorted(points, key=lambda p: p["step"])
            epoch.append(interpolate([p["step"] for p in ordered], [p[axis] for p in ordered], epoch_steps))
            end.append(ordered[-1][axis])
        reference[axis] = {
            "epoch": statistics.fmean(e for e in epoch if e is not None)
            if any(e is not None for e in epoch)
            else None,
            "end": statistics.fmean(end),
        }
    reference["final"] = {
        m: statistics.fmean(sorted(p, key=lambda q: q["step"])[-1][m] for p in full.values()) for m in METRICS
    }
    out: dict[str, Any] = {"full_reference": reference, "arms": {}}
    for arm, runs in arms.items():
        if runs["seeds"]:
            out["arms"][arm] = {
                m: arm_readouts(list(runs["seeds"].values()), charges[arm], reference, m)
                for m in READOUT_METRICS
            }
    return out


def arm_readouts(
    seeds: list[list[dict[str, Any]]], charge: dict[str, Any], reference: dict[str, Any], metric: str
) -> dict[str, Any]:
    """Read-outs of one arm's seeds on ``metric``, mean ± std over seeds, on total compute in generated tokens
    (scoring charge + training tokens); ``E`` = full's one-epoch training tokens (mean over full's seeds),
    ``F`` = full's tokens at the end of the budget:

    * ``acc_at``: accuracy at 0.25/0.5/1 x ``E``, interpolated on each seed's curve; a seed whose curve starts
      past that compute (its scoring cost alone is more) has no value ("not reached").
    * ``final``: accuracy at the last step.
    * ``to_reach``: compute at which a seed first reaches full's final accuracy (the mean of full's seeds' last
      points; `compute_to_reach`), divided by ``F``; seeds that never reach it count in ``of`` but not ``n``.
      ``to_reach_seconds``: the same on wall-clock seconds.
    * ``auc``: `area_under_curve` on [0, ``F``], i.e. mean accuracy over full's compute window.
    """
    target = reference["final"][metric]
    tokens = reference["generated_tokens"]
    seconds = reference["seconds"]
    acc_at: dict[str, Any] = {}
    curves = [total_curve(points, charge, metric) for points in seeds]
    for fraction in FRACTIONS:
        x = None if tokens["epoch"] is None else fraction * tokens["epoch"]
        acc_at[str(fraction)] = _stats([None if x is None else interpolate(xs, ys, x) for xs, ys in curves])
    reach = [compute_to_reach(xs, ys, target) for xs, ys in curves]
    reach_s = [compute_to_reach(*total_curve(points, charge, metric, "seconds"), target) for points in seeds]
    return {
        "acc_at": acc_at,
        "final": _stats([ys[-1] for _, ys in curves]),
        "to_reach": _stats([None if r is None else r / tokens["end"] for r in reach]),
        "to_reach_seconds": _stats([None if r is None else r / seconds["end"] for r in reach_s]),
        "auc": _stats([area_under_curve(xs, ys, tokens["end"]) for xs, ys in curves]),
        "start": {"generated_tokens": charge["generated_tokens"], "seconds": charge["seconds"]},
    }


# ----------------------------------------------------------------------------------------------- outputs


def _cell(stat: dict[str, Any], digits: int = 3, counts: bool = False) -> str:
    if stat["mean"] is None:
        return "not reached"
    text = f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    if counts or stat["n"] < stat["of"]:
        text += f" ({stat['n']}/{stat['of']})"
    return text


def markdown_table(results: dict[str, Any], split: str = "test") -> str:
    """One row per arm, per read-out metric (see `arm_readouts`)."""
    key = "readouts" if split == "test" else f"readouts_{split}"
    subsets = results["subsets" if split == "test" else f"subsets_{split}"]
    logs = results["train_logs" if split == "test" else f"train_logs_{split}"]
    read = results.get(key, {})
    if "arms" not in read:
        return f"No read-outs for the {split} split: {read.get('note', 'no curves')}.\n"
    cfg = results["config"]
    ref = read["full_reference"]
    epoch = ref["generated_tokens"]["epoch"]
    lines = [
        f"Split: {split}. Every arm trains {_steps(cfg)} GRPO steps "
        f"({cfg['prompts_per_step']} prompts x {cfg['num_generations']} generations) on a {cfg['pool_rows']}-row pool; "
        f"greedy pass@1, mean ± std over seeds. Compute = scoring + training generated tokens. Full's one-epoch "
        f"compute E = {'n/a (the budget is shorter)' if epoch is None else f'{epoch:.0f}'} tokens, full's end F = "
        f"{ref['generated_tokens']['end']:.0f} tokens; seconds on {results['machine']}.",
        "",
    ]
    for metric in READOUT_METRICS:
        lines += [
            f"**{metric}** (full's final accuracy {ref['final'][metric]:.3f})",
            "",
            "| arm | rows | passes over own rows | acc @ 0.25 E | acc @ 0.5 E | acc @ 1 E | final | compute to reach "
            "full's final (x F) | AUC on [0, F] | zero-std groups | scoring tokens | scoring s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for arm, row in read["arms"].items():
            r = row[metric]
            rows = [s["rows"] for s in subsets[arm].values()]
            mean_rows = statistics.fmean(rows)
            passes = _steps(cfg) * cfg["prompts_per_step"] / mean_rows if mean_rows else float("nan")
            zero = [
                v["mean_frac_reward_zero_std"]
                for v in logs[arm].values()
                if v["mean_frac_reward_zero_std"] is not None
            ]
            lines.append(
                f"| {arm} | {mean_rows:.0f} | {passes:.1f} | "
                + " | ".join(_cell(r["acc_at"][str(f)]) for f in FRACTIONS)
                + f" | {_cell(r['final'])} | {_cell(r['to_reach'], 2, counts=True)} | {_cell(r['auc'])} | "
                f"{statistics.fmean(zero) if zero else float('nan'):.2f} | {r['start']['generated_tokens']} | "
                f"{r['start']['seconds']:.0f} |"
            )
        lines.append("")
    lines.append(
        "acc @ f E: accuracy at f x full's one-epoch compute, interpolated per seed ('not reached': the arm's "
        "scoring cost alone is more). Compute to reach: first crossing of full's final accuracy, interpolated, "
        "as a ratio to F, mean ± std over the seeds that reach it (n/seeds). AUC: mean accuracy over [0, F], "
        "held at the weak start while scoring. Zero-std groups: mean fraction of GRPO groups with all-equal "
        "rewards (no advantage) per step."
    )
    return "\n".join(lines) + "\n"


def choice_table(choice: dict[str, Any]) -> str:
    """The variant choice on the validation split (`choose_variant`) as Markdown."""
    lines = [
        f"Variant choice on the validation split ({choice['metric']}; AUC on [0, F], F = "
        f"{choice['x_end_tokens']:.0f} tokens, full's end compute on the test split): **{choice['winner']}**.",
        "",
        "| variant | seeds | AUC on [0, F] | final |",
        "|---|---:|---:|---:|",
    ]
    for arm, score in choice["scores"].items():
        lines.append(f"| {arm} | {score['seeds']} | {_cell(score['auc'])} | {_cell(score['final'])} |")
    return "\n".join(lines) + "\n"


def _steps(cfg: dict[str, Any]) -> int:
    if cfg["budget_steps"]:
        return cfg["budget_steps"]
    return max(1, math.ceil(cfg["passes"] * cfg["pool_rows"] / cfg["prompts_per_step"]))


def plot_curves(results: dict[str, Any], path: Path, split: str = "test") -> Path:
    """Accuracy on visual items (with image) against total compute, tokens and seconds: mean over seeds per arm
    (x = mean total compute at each eval step), band = ± std of accuracy; full's final accuracy as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    section = results["arms" if split == "test" else split]
    read = results.get("readouts" if split == "test" else f"readouts_{split}", {})
    metric = READOUT_METRICS[0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    for ax, axis, label in (
        (axes[0], "generated_tokens", "total compute: scoring + training generated tokens"),
        (axes[1], "seconds", "total compute: scoring + training wall-clock seconds"),
    ):
        for arm, runs in section.items():
            charge = results["scoring"].get(arm, {"generated_tokens": 0, "seconds": 0.0})
            curves = [
                total_curve(points, charge, metric, axis) for points in runs["seeds"].values() if points
            ]
            if not curves:
                continue
            n = min(len(xs) for xs, _ in curves)
            xs = [statistics.fmean(c[0][i] for c in curves) for i in range(n)]
            ys = [statistics.fmean(c[1][i] for c in curves) for i in range(n)]
            sd = [statistics.stdev([c[1][i] for c in curves]) if len(curves) > 1 else 0.0 for i in range(n)]
            (line,) = ax.plot(xs, ys, marker=".", label=arm)
            ax.fill_between(
                xs,
                [y - s for y, s in zip(ys, sd, strict=True)],
                [y + s for y, s in zip(ys, sd, strict=True)],
                color=line.get_color(),
                alpha=0.15,
            )
        if "full_reference" in read:
            ax.axhline(
                read["full_reference"]["final"][metric],
                color="black",
                linestyle=":",
                linewidth=1,
                label="full's final accuracy",
            )
            epoch = read["full_reference"][axis]["epoch"]
            if epoch:
                ax.axvline(epoch, color="grey", linestyle="--", linewidth=0.8, label="full's one epoch")
        ax.set_xlabel(label)
        ax.set_ylabel("pass@1, held-out visual items (with image)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Accuracy vs compute at an equal GRPO budget ({split} split; mean ± std over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_outputs(results: dict[str, Any], output_dir: Path) -> dict[str, Path]:
    """``compute_curves.json`` (everything), ``.md`` (tables) and ``.png`` (plot; ``_validation.png`` too when
    there are validation curves)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / "compute_curves.json", "table": output_dir / "compute_curves.md"}
    write_json_atomic(paths["json"], {k: v for k, v in results.items() if k != "outputs"})
    tables = []
    if results.get("arms"):
        tables.append(markdown_table(results, "test"))
        paths["plot"] = plot_curves(results, output_dir / "compute_curves.png", "test")
    if results.get("validation"):
        tables.append(markdown_table(results, "validation"))
        if results.get("variant_choice"):
            tables.append(choice_table(results["variant_choice"]))
        paths["plot_validation"] = plot_curves(
            results, output_dir / "compute_curves_validation.png", "validation"
        )
    paths["table"].write_text("\n".join(tables) if tables else "No curves yet.\n")
    return paths
