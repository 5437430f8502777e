"""`RAPDataFilter`: scores a `datasets.Dataset` with RAP through `datasets.map` and writes `rap_*` columns.

Each `datasets.map` batch goes to the `ScoringEngine` (`rap_hf.scoring.engine`): rollouts with and without the
image, rewards, and the final-layer attention pass for ACE. Selection is a separate, model-free step
(`rap_hf.selection.select_cognitive_samples`, also reachable as `RAPDataFilter.select`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import datasets
import torch

from rap_hf.columns import SCORE_COLUMNS, resolve_columns, score_features
from rap_hf.config import RAPConfig, RAPScoringConfig, RAPSelectionConfig
from rap_hf.errors import RAPUserError
from rap_hf.rewards import resolve_reward_fn, reward_fn_name
from rap_hf.scoring.alarms import raise_score_alarms
from rap_hf.scoring.engine import ScoringEngine, ScoringStats
from rap_hf.scoring.images import undecoded_images
from rap_hf.scoring.loading import load_model_and_processor

logger = logging.getLogger("rap_hf")


class RAPDataFilter:
    """Score a dataset with RAP (CDE, ACE, DRM inputs) and select its cognitive samples.

    Args:
        model: a Hub id ("Qwen/Qwen2.5-VL-7B-Instruct"), a local `save_pretrained` directory, or a loaded
            `AutoModelForImageTextToText` model. Should be the base model that will be RL-trained.
        processor: the matching processor (or where to load it from); by default loaded from the model.
        config: a `RAPConfig` (or just a `RAPScoringConfig`); defaults to the paper's settings.
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
        config: RAPConfig | RAPScoringConfig | None = None,
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
        loaded_model, loaded_processor = load_model_and_processor(
            model,
            processor,
            revision=revision,
            torch_dtype=torch_dtype,
            device=device,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
        self.engine = ScoringEngine(loaded_model, loaded_processor, self.config, self.reward_fn)

    @property
    def model(self) -> Any:
        """The loaded scoring model."""
        return self.engine.model

    @property
    def processor(self) -> Any:
        """The model's processor."""
        return self.engine.processor

    @property
    def stats(self) -> ScoringStats:
        """Counters of everything this filter has scored so far (rows, errors, tokens, seconds)."""
        return self.engine.stats

    @property
    def max_image_pixels(self) -> int | None:
        """Images are downscaled to at most this many pixels before the processor sees them."""
        return self.engine.max_image_pixels

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
        scored get a reason in `rap_error` and NaN scores. Degenerate scores (every reward 0 or identical,
        nearly every row an error) raise a `rap_hf.scoring.alarms.DegenerateScoresWarning` and a log block. `index_offset` shifts the row index used for seeding
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
                dataset._fingerprint,  # datasets' own cache key (no public accessor)
                self.config.to_dict(),
                self.model_name,
                reward_fn_name(self.reward_fn),
                index_offset,
                "rap-v1",
            ]
        )
        features = raw.features.copy()
        features.update(score_features(self.config.keep_completions))
        start = time.perf_counter()
        scored = raw.map(
            self._map_batch,
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
        raise_score_alarms(scored, columns["answer"], where=desc)
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
            # dataset._fingerprint: datasets' own cache key (no public accessor).
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

    def select(
        self,
        scored: datasets.Dataset | datasets.DatasetDict,
        config: RAPSelectionConfig | None = None,
    ) -> datasets.Dataset | datasets.DatasetDict:
        """`select_cognitive_samples(scored, config or self.config)`."""
        from rap_hf.selection import select_cognitive_samples

        if config is None and not isinstance(self.config, RAPSelectionConfig):
            raise RAPUserError("this filter was built with a RAPScoringConfig only: pass a selection config")
        return select_cognitive_samples(scored, config or self.config)

    def resolve_columns(self, dataset: datasets.Dataset) -> dict[str, str]:
        """Map roles (prompt, image, answer) to column names; raise listing the available columns if absent."""
        return resolve_columns(dataset, self.config)

    # ------------------------------------------------------------------------------------------ internals

    def _prepare_for_map(self, dataset: datasets.Dataset) -> tuple[dict[str, str], datasets.Dataset]:
        columns = self.resolve_columns(dataset)
        existing = [c for c in SCORE_COLUMNS if c in dataset.column_names]
        if existing:
            raise RAPUserError(f"dataset already has score columns {existing}; remove them to score again")
        return columns, undecoded_images(dataset, columns["image"])

    def _map_batch(
        self,
        batch: dict[str, list],
        indices: list[int],
        rank: int | None,
        *,
        columns: dict[str, str],
        index_offset: int,
    ) -> dict[str, list]:
        return self.engine.score_batch(batch, indices, columns, index_offset)

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
        out = self.engine.score_batch(batch, indices, columns, index_offset)
        if indices:
            on_batch(index_offset + indices[0], out)
