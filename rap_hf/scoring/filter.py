"""`RAPDataFilter`: scores a `datasets.Dataset` with RAP through `datasets.map` and writes `rap_*` columns.

Per batch: decode images and build both prompts row by row (a bad row gets `rap_error`, the rest go on),
generate M multimodal and M text-only rollouts in one batched call per arm, reward them, then run one
forward pass per row over a multimodal rollout to capture the final-layer attention for ACE.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch

from rap_hf.columns import NUMERIC_SCORE_COLUMNS, SCORE_COLUMNS, score_features
from rap_hf.config import RAPConfig
from rap_hf.estimators import ace_normalized, ace_paper, cde_score
from rap_hf.rewards import compute_rewards, normalize_solution, resolve_reward_fn
from rap_hf.scoring.attention import capture_final_layer_attention
from rap_hf.scoring.images import ImageError, decode_image, normalize_image, processor_pixel_budget
from rap_hf.scoring.loading import load_model_and_processor
from rap_hf.scoring.rollouts import (
    ARM_MM,
    ARM_TEXT,
    build_messages,
    completion_seed,
    generate_rollouts,
    render_prompt,
)

logger = logging.getLogger("rap_hf")


@dataclass
class ScoringStats:
    """Counters accumulated while scoring (in the scoring process)."""

    rows: int = 0
    errors: int = 0
    generated_tokens: int = 0
    seconds_generation: float = 0.0
    seconds_attention: float = 0.0
    seconds_rewards: float = 0.0
    error_reasons: dict[str, int] = field(default_factory=dict)
    # The same generation counters split by arm ("mm" with the image, "text" without): where the cost goes.
    seconds_generation_by_arm: dict[str, float] = field(default_factory=dict)
    generated_tokens_by_arm: dict[str, int] = field(default_factory=dict)

    def add_generation(self, arm: str, seconds: float) -> None:
        self.seconds_generation += seconds
        self.seconds_generation_by_arm[arm] = self.seconds_generation_by_arm.get(arm, 0.0) + seconds


@dataclass
class _Row:
    index: int
    images: list
    mm_prompt: str
    text_prompt: str
    solution: str
    error: str | None = None
    completions: dict[str, list[str]] = field(default_factory=dict)
    completion_ids: dict[str, list[list[int]]] = field(default_factory=dict)
    rewards: dict[str, list[float]] = field(default_factory=dict)


class RAPDataFilter:
    """Score a dataset with RAP (CDE, ACE, DRM inputs) and select its cognitive samples.

    Args:
        model: a Hub id ("Qwen/Qwen2.5-VL-7B-Instruct"), a local `save_pretrained` directory, or a loaded
            `AutoModelForImageTextToText` model. Should be the base model that will be RL-trained.
        processor: the matching processor (or where to load it from); by default loaded from the model.
        config: a `RAPConfig`; defaults to the paper's settings.
        reward_fn: a TRL-style reward function `fn(completions, solution, **kwargs) -> list[float]`; by default
            `rap_hf.rewards.accuracy_reward` (answer extraction + math-verify equivalence).
        trust_remote_code: allow model repos with custom code (off by default).
        torch_dtype, device, attn_implementation, revision: passed to `from_pretrained` when loading by name.

    Example:
        >>> flt = RAPDataFilter("Qwen/Qwen2.5-VL-7B-Instruct", config=RAPConfig(num_rollouts=5))
        >>> scored = flt.score(dataset)          # adds the rap_* columns, never drops rows
        >>> annotated = flt.select(scored)       # adds rap_stage / rap_selected
        >>> subset = annotated.filter(lambda r: r["rap_selected"])
    """

    def __init__(
        self,
        model: str | os.PathLike | Any,
        processor: Any = None,
        config: RAPConfig | None = None,
        reward_fn: Any = None,
        *,
        trust_remote_code: bool = False,
        torch_dtype: str | torch.dtype = "auto",
        device: str | torch.device | None = None,
        attn_implementation: str | None = None,
        revision: str | None = None,
    ) -> None:
        self.config = config if config is not None else RAPConfig()
        self.config.validate()
        self.reward_fn = resolve_reward_fn(reward_fn)
        self.model_name = (
            os.fspath(model)
            if isinstance(model, (str, os.PathLike))
            else getattr(model, "name_or_path", type(model).__name__)
        )
        self.model, self.processor = load_model_and_processor(
            model,
            processor,
            revision=revision,
            torch_dtype=torch_dtype,
            device=device,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
        self.max_image_pixels = self.config.max_image_pixels or processor_pixel_budget(self.processor)
        self.stats = ScoringStats()
        # Set by rap_hf.scoring.distributed under ZeRO-3 with sharded parameters: every process must then make the
        # same sequence of model calls (see rap_hf.scoring.zero3.Lockstep). None: calls follow the data.
        self.lockstep: Any = None
        self._accepts_logits_to_keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    # ------------------------------------------------------------------------------------------ public API

    def score(
        self,
        dataset: datasets.Dataset | datasets.DatasetDict,
        *,
        desc: str = "RAP scoring",
        index_offset: int = 0,
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Return `dataset` with the `rap_*` score columns added, every row kept, in the original order.

        Runs through `datasets.map(batched=True, with_indices=True, with_rank=True)`. Rows that cannot be
        scored get a reason in `rap_error` and NaN scores. `index_offset` shifts the row index used for seeding
        (for a shard of a larger dataset, pass the shard's first global index so seeds match a full run).
        """
        if isinstance(dataset, datasets.DatasetDict):
            return datasets.DatasetDict(
                {
                    name: self.score(split, desc=f"{desc} [{name}]", index_offset=index_offset)
                    for name, split in dataset.items()
                }
            )
        columns, raw = self._prepare_for_map(dataset)
        image_column = columns["image"]
        fingerprint = datasets.fingerprint.Hasher.hash(
            [
                dataset._fingerprint,
                self.config.to_dict(),
                self.model_name,
                _fn_name(self.reward_fn),
                index_offset,
                "rap-v1",
            ]
        )
        features = raw.features.copy()
        features.update(score_features(self.config.keep_completions))
        start = time.perf_counter()
        scored = raw.map(
            self._score_batch,
            batched=True,
            batch_size=self.config.batch_size,
            with_indices=True,
            with_rank=True,
            fn_kwargs={"columns": columns, "index_offset": index_offset},
            features=features,
            new_fingerprint=fingerprint,
            desc=desc,
        )
        if image_column in dataset.features:
            scored = scored.cast_column(image_column, dataset.features[image_column])
        logger.info(
            "RAP scored %d rows in %.1fs (%d errors, %d generated tokens)",
            len(scored),
            time.perf_counter() - start,
            self.stats.errors,
            self.stats.generated_tokens,
        )
        return scored

    def score_batches(
        self,
        dataset: datasets.Dataset,
        on_batch: Callable[[int, dict[str, list]], None],
        *,
        index_offset: int = 0,
        desc: str = "RAP scoring",
    ) -> None:
        """Score `dataset` like `score`, but hand each batch's score columns to `on_batch(first_row, columns)`
        instead of collecting them (`first_row` counts from `index_offset`).

        The `datasets.map` function returns nothing, so nothing is cached or held in memory: this is how
        `rap_hf.scoring.distributed` checkpoints every finished batch of a long run.
        """
        columns, raw = self._prepare_for_map(dataset)
        # Set explicitly: datasets cannot hash `on_batch` and would warn, and nothing is cached anyway.
        fingerprint = datasets.fingerprint.Hasher.hash(
            [dataset._fingerprint, self.config.to_dict(), self.model_name, index_offset, "rap-batches-v1"]
        )
        raw.map(
            self._score_batch_to,
            batched=True,
            batch_size=self.config.batch_size,
            with_indices=True,
            with_rank=True,
            fn_kwargs={"columns": columns, "index_offset": index_offset, "on_batch": on_batch},
            load_from_cache_file=False,  # a cache hit would skip on_batch
            new_fingerprint=fingerprint,
            desc=desc,
        )

    def select(self, scored: datasets.Dataset | datasets.DatasetDict, config: RAPConfig | None = None):
        """`select_cognitive_samples(scored, config or self.config)`."""
        from rap_hf.selection import select_cognitive_samples

        return select_cognitive_samples(scored, config or self.config)

    def resolve_columns(self, dataset: datasets.Dataset) -> dict[str, str]:
        """Map roles (prompt, image, answer) to column names; raise listing the available columns if absent."""
        return resolve_columns(dataset, self.config)

    # ------------------------------------------------------------------------------------------ internals

    def _prepare_for_map(self, dataset: datasets.Dataset) -> tuple[dict[str, str], datasets.Dataset]:
        columns = self.resolve_columns(dataset)
        existing = [c for c in SCORE_COLUMNS if c in dataset.column_names]
        if existing:
            raise ValueError(f"dataset already has score columns {existing}; remove them to score again")
        return columns, _undecoded_images(dataset, columns["image"])

    def _score_batch_to(
        self,
        batch: dict[str, list],
        indices: list[int],
        rank: int | None,
        *,
        columns: dict[str, str],
        index_offset: int,
        on_batch: Callable[[int, dict[str, list]], None],
    ) -> None:
        out = self._score_batch(batch, indices, rank, columns=columns, index_offset=index_offset)
        if indices:
            on_batch(index_offset + indices[0], out)

    def _score_batch(
        self,
        batch: dict[str, list],
        indices: list[int],
        rank: int | None,
        *,
        columns: dict[str, str],
        index_offset: int,
    ) -> dict[str, list]:
        rows = [self._prepare_row(batch, i, index_offset + idx, columns) for i, idx in enumerate(indices)]
        valid = [r for r in rows if r.error is None]
        for arm in (ARM_MM, ARM_TEXT):
            self._generate_arm(valid, arm)
        valid = [r for r in rows if r.error is None]
        self._reward(valid)
        if self.lockstep is not None:
            self.lockstep.begin_attention_passes(self, rows)
        out = {name: [] for name in score_features(self.config.keep_completions)}
        for row in rows:
            scores = self._row_scores(row) if row.error is None else None
            if scores is None:
                self.stats.errors += 1
                reason = row.error.split(":")[0]
                self.stats.error_reasons[reason] = self.stats.error_reasons.get(reason, 0) + 1
                scores = {name: math.nan for name in NUMERIC_SCORE_COLUMNS}
                if self.config.keep_completions:
                    scores["rap_completions_mm"] = row.completions.get(ARM_MM, [])
                    scores["rap_completions_text"] = row.completions.get(ARM_TEXT, [])
                scores["rap_error"] = row.error
            for name in out:
                out[name].append(scores[name])
            self.stats.rows += 1
        if self.lockstep is not None:
            self.lockstep.end_attention_passes(self)
        return out

    def _prepare_row(self, batch: dict[str, list], i: int, index: int, columns: dict[str, str]) -> _Row:
        row = _Row(index=index, images=[], mm_prompt="", text_prompt="", solution="")
        try:
            value = batch[columns["image"]][i]
            values = value if isinstance(value, (list, tuple)) else [value]
            if not values or all(v is None for v in values):
                raise ImageError("missing image")
            row.images = [normalize_image(decode_image(v), self.max_image_pixels) for v in values]
            solution = normalize_solution(batch[columns["answer"]][i])
            if solution is None:
                raise ValueError("missing or empty answer")
            row.solution = solution
            prompt = batch[columns["prompt"]][i]
            system = self.config.system_prompt
            row.mm_prompt = render_prompt(
                self.processor,
                build_messages(prompt, len(row.images), with_images=True, system_prompt=system),
            )
            row.text_prompt = render_prompt(
                self.processor, build_messages(prompt, 0, with_images=False, system_prompt=system)
            )
        except Exception as exc:  # each row fails alone; the reason is kept with the row
            row.error = _reason(exc)
        return row

    def _generate_arm(self, rows: list[_Row], arm: str) -> None:
        if self.lockstep is not None:
            start = time.perf_counter()
            self.lockstep.generate_arm(self, rows, arm)
            self.stats.add_generation(arm, time.perf_counter() - start)
            return
        if not rows:
            return
        start = time.perf_counter()
        try:
            self._generate_rows(rows, arm)
        except Exception as exc:
            if len(rows) == 1:
                rows[0].error = f"generation failed: {_reason(exc)}"
            else:
                # One row can break a whole batch (e.g. an image the processor rejects): retry row by row.
                logger.warning("batched %s generation failed (%s); retrying row by row", arm, _reason(exc))
                for row in rows:
                    try:
                        self._generate_rows([row], arm)
                    except Exception as row_exc:
                        row.error = f"generation failed: {_reason(row_exc)}"
        self.stats.add_generation(arm, time.perf_counter() - start)

    def _generate_rows(self, rows: list[_Row], arm: str, synced_gpus: bool | None = None) -> None:
        cfg = self.config
        rollouts = generate_rollouts(
            self.model,
            self.processor,
            [r.mm_prompt if arm == ARM_MM else r.text_prompt for r in rows],
            [r.images for r in rows] if arm == ARM_MM else None,
            [[completion_seed(cfg.seed, r.index, arm, k) for k in range(cfg.num_rollouts)] for r in rows],
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            synced_gpus=synced_gpus,
        )
        self.stats.generated_tokens += rollouts.num_generated_tokens
        by_arm = self.stats.generated_tokens_by_arm
        by_arm[arm] = by_arm.get(arm, 0) + rollouts.num_generated_tokens
        for row, texts, ids in zip(rows, rollouts.texts, rollouts.token_ids, strict=True):
            row.completions[arm] = texts
            row.completion_ids[arm] = ids

    def _reward(self, rows: list[_Row]) -> None:
        start = time.perf_counter()
        for arm in (ARM_MM, ARM_TEXT):
            completions = [c for r in rows for c in r.completions[arm]]
            solutions = [r.solution for r in rows for _ in r.completions[arm]]
            if not completions:
                continue
            try:
                rewards = compute_rewards(self.reward_fn, completions, solutions)
            except Exception as exc:
                for row in rows:
                    row.error = f"reward function failed: {_reason(exc)}"
                return
            start_row = 0
            for row in rows:
                n = len(row.completions[arm])
                row.rewards[arm] = rewards[start_row : start_row + n]
                start_row += n
        self.stats.seconds_rewards += time.perf_counter() - start

    def _row_scores(self, row: _Row) -> dict[str, Any] | None:
        acc_mm = sum(row.rewards[ARM_MM]) / len(row.rewards[ARM_MM])
        acc_text = sum(row.rewards[ARM_TEXT]) / len(row.rewards[ARM_TEXT])
        ace, ace_norm = math.nan, math.nan
        if self.config.compute_ace:
            try:
                ace, ace_norm = self._ace_scores(row)
            except Exception as exc:
                row.error = f"attention pass failed: {_reason(exc)}"
                return None
        scores: dict[str, Any] = {
            "rap_acc_mm": acc_mm,
            "rap_acc_text": acc_text,
            "rap_cde": cde_score(acc_mm, acc_text),
            "rap_ace": ace,
            "rap_ace_norm": ace_norm,
            "rap_difficulty": 1.0 - acc_mm,
            "rap_error": None,
        }
        if self.config.keep_completions:
            scores["rap_completions_mm"] = row.completions[ARM_MM]
            scores["rap_completions_text"] = row.completions[ARM_TEXT]
        return scores

    @torch.inference_mode()
    def _ace_scores(self, row: _Row) -> tuple[float, float]:
        """ACE on one multimodal rollout: the first correct one if any, else the first (our reading)."""
        start = time.perf_counter()
        response = self._ace_response(row)
        if not response:
            return math.nan, math.nan
        inputs = self.processor(text=[row.mm_prompt], images=row.images, return_tensors="pt").to(
            self.model.device
        )
        prompt_length = inputs["input_ids"].shape[1]
        response_ids = torch.tensor([response], dtype=inputs["input_ids"].dtype, device=self.model.device)
        for key, value in list(inputs.items()):
            if key == "input_ids":
                inputs[key] = torch.cat([value, response_ids], dim=1)
            elif isinstance(value, torch.Tensor) and value.ndim == 2 and value.shape[1] == prompt_length:
                # Per-token side inputs (attention_mask, mm_token_type_ids, ...): response tokens are
                # attended-to text tokens.
                fill = 1 if key == "attention_mask" else 0
                inputs[key] = torch.cat(
                    [value, torch.full_like(response_ids, fill, dtype=value.dtype)], dim=1
                )
        kwargs = {"logits_to_keep": 1} if self._accepts_logits_to_keep else {}
        if self.lockstep is not None:
            self.lockstep.forwards_done += 1
        with capture_final_layer_attention(self.model, num_rows=len(response)) as recorder:
            self.model(**inputs, use_cache=False, **kwargs)
        if recorder.result is None:
            raise RuntimeError("the final attention layer was not called")
        attn = recorder.result
        self.stats.seconds_attention += time.perf_counter() - start
        sigma, span = self.config.sigma, self.config.ace_min_span
        return ace_paper(attn, sigma, span), ace_normalized(attn, sigma, span)

    @staticmethod
    def _ace_response(row: _Row) -> list[int]:
        """Token ids of the rollout ACE reads: the first correct multimodal one if any, else the first."""
        rewards = row.rewards[ARM_MM]
        chosen = next((k for k, r in enumerate(rewards) if r > 0), 0)
        return row.completion_ids[ARM_MM][chosen]


def resolve_columns(dataset: datasets.Dataset, config: RAPConfig) -> dict[str, str]:
    """Map roles (prompt, image, answer) to column names; raise listing the available columns if absent.

    Needs only the config, so callers can fail fast before loading a model."""
    names = dataset.column_names
    image = config.image_column if config.image_column in names else ("images" if "images" in names else None)
    missing = []
    if config.prompt_column not in names:
        missing.append(f"prompt column {config.prompt_column!r}")
    if config.answer_column not in names:
        missing.append(f"answer column {config.answer_column!r}")
    if image is None:
        missing.append(f"image column {config.image_column!r} (or a list column 'images')")
    if missing:
        raise ValueError(
            f"dataset is missing {', '.join(missing)}; available columns: {names}. "
            "Set prompt_column / image_column / answer_column in RAPConfig."
        )
    return {"prompt": config.prompt_column, "image": image, "answer": config.answer_column}


def _undecoded_images(dataset: datasets.Dataset, column: str) -> datasets.Dataset:
    """Cast an Image (or list-of-Image) column to decode=False so decoding happens per row, under our control."""
    feature = dataset.features[column]
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.Image) and inner.decode:
        return dataset.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return dataset


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (ValueError, ImageError)) and text:
        return text[:300]
    return f"{type(exc).__name__}: {text}"[:300]


def _fn_name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
