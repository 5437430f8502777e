"""`RAPGRPOTrainer`: TRL's `GRPOTrainer` on the RAP-selected subset, with optional online re-selection.

What it adds to `GRPOTrainer` (everything else is TRL's, unchanged):

1. **Data** (`prepare_training_data`): the rows to train on are chosen from the dataset's RAP columns according
   to ``args.rap_train_on`` (see `RAPGRPOConfig`); selection runs first when the dataset is scored but not
   annotated.
2. **Reward**: `rap_hf.rewards.accuracy_reward` (reads the ``solution`` column) comes first by default, the
   same verifiable reward RAP scored with, so training and selection agree on what "correct" means; extra TRL
   reward functions follow it.
3. **Online RAP** (``args.rap_online``): `_get_train_sampler` returns an `OnlineRepeatSampler` over an
   `OnlineSelector`; `_calculate_rewards` (which TRL already gathers across processes) feeds each generation
   batch's per-prompt correctness to the selector, identically on every process, and logs ``rap/active_pool``,
   ``rap/retired``, ``rap/replaced``, ``rap/reserve_left``, ``rap/retire_blocked`` and
   ``rap/batch_difficulty`` through TRL's metrics (next to TRL's own ``frac_reward_zero_std``). The selector's
   state is saved with every checkpoint and restored on resume.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from accelerate.utils import gather
from datasets import Dataset, IterableDataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer

from rap_hf.errors import RAPUserError
from rap_hf.rewards import accuracy_reward
from rap_hf.selection import ERROR, SELECTED_COLUMN, STAGE_COLUMN, select_cognitive_samples, stage_counts
from rap_hf.training.config import RAPGRPOConfig
from rap_hf.training.online import OnlineSelector, build_reserve
from rap_hf.training.sampler import OnlineRepeatSampler
from rap_hf.training.trl_hooks import check_trl_hooks

logger = logging.getLogger("rap_hf")

__all__ = [
    "ONLINE_STATE_FILE",
    "POOL_INDEX_COLUMN",
    "PreparedTrainingData",
    "RAPGRPOTrainer",
    "check_rap_requirements",
    "prepare_training_data",
    "resolve_reward_funcs",
]

#: Column added to the training data in online mode: the row's position, so gathered rewards map to samples.
POOL_INDEX_COLUMN = "rap_pool_index"
#: File with the online selector's state, in every checkpoint and (via `save_online_state`) the output dir.
ONLINE_STATE_FILE = "rap_online_state.json"
#: Score columns whose presence (without ``rap_stage``) means "scored but not selected yet".
SCORE_COLUMNS = ("rap_acc_mm", "rap_cde")
COMPLETION_COLUMNS = ("rap_completions_mm", "rap_completions_text")
#: The column `rap_hf.rewards.accuracy_reward` reads (the reference answer).
SOLUTION_COLUMN = "solution"


@dataclass
class PreparedTrainingData:
    """The training data `RAPGRPOTrainer` hands to TRL, and the online pool over it.

    Attributes:
        dataset: the rows to train on (online mode: the active pool first, then the reserve, with a
            ``rap_pool_index`` column); None when TRL's ``environment_factory`` owns the data.
        active: positions (in ``dataset``) of the initial active pool: every row offline.
        reserve: positions of the reserve rows, in replacement order (online mode with ``"selected"``).
        source_rows: position in the input dataset of every row of ``dataset`` (None for iterable datasets).
        stage_counts: rows per selection stage of the input, when it carries (or got) an annotation.
    """

    dataset: Dataset | IterableDataset | None
    active: list[int] = field(default_factory=list)
    reserve: list[int] = field(default_factory=list)
    source_rows: list[int] | None = None
    stage_counts: dict[str, int] | None = None


def _column_as_numpy(dataset: Dataset, name: str, dtype: Any) -> np.ndarray:
    """One column as numpy: ``float`` (nulls -> NaN), ``bool`` (nulls -> False), ``str`` (objects), or
    ``None`` for the column's is-null mask."""
    # The arrow formatter honours an indices mapping (after select/filter), unlike `dataset.data`; nulls -> NaN.
    column = dataset.select_columns([name]).with_format("arrow")[:].column(name)
    if dtype is None:  # "is null" mask
        return pc.is_null(column).to_numpy(zero_copy_only=False).astype(bool)
    if dtype is bool:
        return pc.fill_null(column, False).to_numpy(zero_copy_only=False).astype(bool)
    if dtype is str:
        return np.asarray(column.to_pylist(), dtype=object)
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def _annotate(dataset: Dataset, args: RAPGRPOConfig) -> Dataset:
    """The dataset with ``rap_selected``: the existing annotation, or a fresh selection of a scored dataset."""
    if SELECTED_COLUMN in dataset.column_names:
        return dataset
    if all(column in dataset.column_names for column in SCORE_COLUMNS):
        logger.info("RAP: the dataset is scored but not selected; running select_cognitive_samples")
        return select_cognitive_samples(dataset, args.rap_selection_config())
    raise RAPUserError(
        "rap_train_on='selected' needs a dataset scored by RAPDataFilter (columns "
        f"{list(SCORE_COLUMNS)}) or annotated by select_cognitive_samples (column {SELECTED_COLUMN!r}); "
        f"got columns {dataset.column_names}. For a dataset that is already the selected subset (e.g. the Hub "
        "config 'selected'), set rap_train_on='as_is'."
    )


def prepare_training_data(dataset: Dataset | IterableDataset, args: RAPGRPOConfig) -> PreparedTrainingData:
    """Choose the training rows (``args.rap_train_on``) and, in online mode, the active pool and reserve.

    Pure data work, no model: see `RAPGRPOConfig` for the rules. Scoring rollouts
    (``rap_completions_*``) are dropped unless ``args.rap_drop_completion_columns`` is False.
    """
    if isinstance(dataset, IterableDataset):
        if args.rap_train_on != "as_is" or args.rap_online:
            raise RAPUserError(
                "an IterableDataset (streaming) can only be trained on with rap_train_on='as_is' and "
                "rap_online=False: selection needs the score columns of every row, and online RAP needs "
                "indexable rows"
            )
        return PreparedTrainingData(dataset)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"train_dataset must be a datasets.Dataset, got {type(dataset).__name__}")

    if args.rap_drop_completion_columns:
        dropped = [c for c in COMPLETION_COLUMNS if c in dataset.column_names]
        if dropped:
            dataset = dataset.remove_columns(dropped)

    counts = None
    reserve_source: list[int] = []
    if args.rap_train_on == "selected":
        dataset = _annotate(dataset, args)
        selected = _column_as_numpy(dataset, SELECTED_COLUMN, bool)
        active_source = np.flatnonzero(selected).tolist()
        if STAGE_COLUMN in dataset.column_names:
            counts = stage_counts(dataset)
            stages = _column_as_numpy(dataset, STAGE_COLUMN, str)
            not_error = stages != ERROR
        else:
            not_error = np.ones(len(dataset), dtype=bool)
        if "rap_error" in dataset.column_names:
            not_error &= _column_as_numpy(dataset, "rap_error", None)
        if args.rap_online:
            if all(column in dataset.column_names for column in SCORE_COLUMNS):
                reserve_source = build_reserve(
                    np.flatnonzero(~selected & not_error),
                    _column_as_numpy(dataset, "rap_acc_mm", float),
                    _column_as_numpy(dataset, "rap_cde", float),
                )
            else:
                logger.warning(
                    "RAP online: no score columns %s, so no reserve: retired samples just leave",
                    SCORE_COLUMNS,
                )
        logger.info(
            "RAP: training on %d selected rows of %d%s",
            len(active_source),
            len(dataset),
            f" (reserve: {len(reserve_source)} rows)" if args.rap_online else "",
        )
    else:
        if args.rap_train_on == "all" and STAGE_COLUMN in dataset.column_names:
            counts = stage_counts(dataset)  # logged for comparison with a selected run
        active_source = list(range(len(dataset)))
        logger.info("RAP: rap_train_on=%r, training on all %d rows", args.rap_train_on, len(dataset))

    if counts is not None:
        logger.info("RAP: rows per selection stage: %s", counts)
    rows = active_source + reserve_source
    if rows != list(range(len(dataset))):
        dataset = dataset.select(rows)
    if args.rap_online:
        if POOL_INDEX_COLUMN in dataset.column_names:
            dataset = dataset.remove_columns(POOL_INDEX_COLUMN)
        dataset = dataset.add_column(POOL_INDEX_COLUMN, list(range(len(rows))))
    n_active = len(active_source)
    return PreparedTrainingData(
        dataset=dataset,
        active=list(range(n_active)),
        reserve=list(range(n_active, len(rows))),
        source_rows=rows,
        stage_counts=counts,
    )


def resolve_reward_funcs(reward_funcs: Any, args: RAPGRPOConfig) -> list[Any]:
    """The reward functions handed to TRL: `accuracy_reward` first (when ``args.rap_accuracy_reward``), then
    ``reward_funcs`` (a function, a reward-model id, or a list of them), in order.

    May be empty (no reward function and ``rap_accuracy_reward=False``): TRL then decides, and accepts it only when
    an ``environment_factory`` environment owns the reward (``get_reward``)."""
    if reward_funcs is None:
        funcs: list[Any] = []
    elif isinstance(reward_funcs, (list, tuple)):
        funcs = list(reward_funcs)
    else:
        funcs = [reward_funcs]
    user_count = len(funcs)
    if args.rap_accuracy_reward and not any(f is accuracy_reward for f in funcs):
        funcs.insert(0, accuracy_reward)
        if args.reward_weights is not None and len(args.reward_weights) == user_count:
            raise RAPUserError(
                f"reward_weights has {user_count} weight(s), one per reward function you passed, but "
                "rap_accuracy_reward=True puts rap_hf.rewards.accuracy_reward first: give its weight first "
                f"({user_count + 1} weights), or set rap_accuracy_reward=False"
            )
    return funcs


def _column_names(dataset: Any) -> list[str] | None:
    """A dataset's columns; None when unknown (e.g. a streamed dataset without features)."""
    names = getattr(dataset, "column_names", None)
    return list(names) if names is not None else None


def check_rap_requirements(
    train_dataset: Dataset | IterableDataset | None,
    args: RAPGRPOConfig,
    reward_funcs: Sequence[Any],
    eval_dataset: Any = None,
    *,
    defaults: bool = False,
) -> None:
    """Fail now, with one `RAPUserError` naming each option, if the data lacks what an enabled RAP feature reads.

    Checked before the model is loaded (each would otherwise fail later, some only at the first training step):

    * no ``train_dataset`` (TRL's ``environment_factory`` owning the data): only without RAP features;
    * ``rap_train_on="selected"``: score columns (``rap_acc_mm``, ``rap_cde``) or an annotation (``rap_selected``);
    * ``rap_train_on`` other than ``"as_is"`` or ``rap_online``: an indexable `Dataset`, not a streamed one;
    * `accuracy_reward` among ``reward_funcs`` (``rap_accuracy_reward=True`` puts it first): a ``solution`` column,
      in ``train_dataset`` and in every evaluation dataset (TRL computes rewards there too).

    ``defaults`` says ``args`` was not given (RAPGRPOConfig's defaults, which turn RAP on): the message then says how
    to get TRL's behaviour instead.
    """
    problems: list[str] = []
    if train_dataset is None:
        if args.rap_features():
            problems.append(
                f"no train_dataset, but {', '.join(args.rap_features())} need(s) the training rows. By design, RAP "
                "selects and rewards rows of a dataset; data owned by an environment (TRL's environment_factory "
                "without a train_dataset) is accepted only with the RAP features off (rap_train_on='as_is', "
                "rap_accuracy_reward=False, rap_online=False)"
            )
    else:
        columns = _column_names(train_dataset)
        streamed = isinstance(train_dataset, IterableDataset)
        if streamed and (args.rap_train_on != "as_is" or args.rap_online):
            problems.append(
                f"train_dataset is an IterableDataset (streamed), but rap_train_on={args.rap_train_on!r} and "
                f"rap_online={args.rap_online} need every row up front: selection reads the score columns of "
                "all rows and online RAP indexes rows. Load it as a Dataset, or use rap_train_on='as_is' offline"
            )
        elif args.rap_train_on == "selected" and columns is not None:
            annotated = SELECTED_COLUMN in columns
            scored = all(c in columns for c in SCORE_COLUMNS)
            if not (annotated or scored):
                problems.append(
                    "rap_train_on='selected' trains on the rows RAP selected, so it needs a dataset scored by "
                    f"RAPDataFilter (columns {list(SCORE_COLUMNS)}) or annotated by select_cognitive_samples "
                    f"(column {SELECTED_COLUMN!r}); for a dataset that is already the subset (e.g. the Hub config "
                    "'selected') or plain data, set rap_train_on='as_is'"
                )
        if any(f is accuracy_reward for f in reward_funcs):
            where = (
                "rap_accuracy_reward=True puts rap_hf.rewards.accuracy_reward first"
                if args.rap_accuracy_reward
                else "reward_funcs includes rap_hf.rewards.accuracy_reward"
            )
            datasets = {"train_dataset": train_dataset}
            if isinstance(eval_dataset, dict):
                datasets.update({f"eval_dataset[{k!r}]": v for k, v in eval_dataset.items()})
            elif eval_dataset is not None:
                datasets["eval_dataset"] = eval_dataset
            for name, dataset in datasets.items():
                names = _column_names(dataset)
                if names is not None and SOLUTION_COLUMN not in names:
                    fix = "set rap_accuracy_reward=False" if args.rap_accuracy_reward else "remove it"
                    problems.append(
                        f"{where}, which reads the reference answer from a {SOLUTION_COLUMN!r} column, but "
                        f"{name} has columns {names}: add a {SOLUTION_COLUMN!r} column, or {fix} and pass your "
                        "own reward_funcs"
                    )
    if not problems:
        return
    message = "RAPGRPOTrainer cannot train on this data with these options:\n- " + "\n- ".join(problems)
    if defaults:
        message += (
            "\nNo args were given, so RAPGRPOConfig's defaults apply, and they turn RAP on (by design: "
            "RAPGRPOTrainer trains on RAP-selected data with RAP's accuracy reward unless told otherwise). To use "
            "it as a drop-in GRPOTrainer, pass args=GRPOConfig(...) or RAPGRPOConfig(rap_train_on='as_is', "
            "rap_accuracy_reward=False)."
        )
    raise RAPUserError(message)


class RAPGRPOTrainer(GRPOTrainer):
    """GRPO (TRL) on RAP-selected data, with optional online re-selection (see the module docstring).

    As a drop-in `GRPOTrainer`: pass a plain `GRPOConfig` (read with the RAP features off, see
    `RAPGRPOConfig.from_grpo_config`), or a `RAPGRPOConfig` with ``rap_train_on="as_is"``,
    ``rap_accuracy_reward=False`` and ``rap_online=False``; it then trains exactly as `GRPOTrainer` does
    (``tests/test_trl_parity.py`` runs TRL's own GRPOTrainer tests against it).

    Args:
        model: as for `GRPOTrainer`: a Hub id or local path, or a loaded model.
        reward_funcs: extra reward functions (TRL's signature), run after `accuracy_reward` unless
            ``args.rap_accuracy_reward`` is False. None: `accuracy_reward` alone.
        args: a `RAPGRPOConfig`, or a `GRPOConfig` (drop-in, RAP off). None: ``RAPGRPOConfig``'s defaults
            (RAP on, by design) with ``output_dir="<model name>-RAP-GRPO"``.
        train_dataset: a scored, annotated or already selected `datasets.Dataset` (see
            ``RAPGRPOConfig.rap_train_on``); an `IterableDataset` only with ``rap_train_on="as_is"`` offline;
            None only with the RAP features off (TRL's ``environment_factory`` owning the data).
        eval_dataset: used as given (no selection).
        **kwargs: every other `GRPOTrainer` argument (``processing_class``, ``peft_config``, ``callbacks``,
            ``tools``, ``environment_factory``, ...), passed on unchanged.

    Raises:
        RAPUserError: at construction, before the model is loaded, when the data lacks a column an enabled RAP
            feature reads (`check_rap_requirements`).

    Attributes:
        rap_data: the `PreparedTrainingData` (which input rows are trained on, the reserve, stage counts).
        rap_selector: the `OnlineSelector` in online mode, else None.
    """

    _tag_names = ["trl", "grpo", "rap"]
    _name = "RAP-GRPO"

    def __init__(
        self,
        model: Any,
        reward_funcs: Callable | str | Sequence[Callable | str] | None = None,
        args: RAPGRPOConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Any = None,
        **kwargs: Any,
    ) -> None:
        check_trl_hooks()  # the overrides below rely on TRL's private hooks: fail clearly if they changed
        defaults = args is None
        args = self._rap_config(model, args)
        funcs = resolve_reward_funcs(reward_funcs, args)
        check_rap_requirements(train_dataset, args, funcs, eval_dataset, defaults=defaults)
        self.rap_data = (
            prepare_training_data(train_dataset, args)
            if train_dataset is not None
            else PreparedTrainingData(dataset=None)
        )
        self.rap_selector: OnlineSelector | None = None
        # Columns RAP reads at batch time, kept when remove_unused_columns=True (and only these: as a drop-in, the
        # reward functions must see exactly the columns they see under GRPOTrainer).
        self._rap_batch_columns = ([SOLUTION_COLUMN] if any(f is accuracy_reward for f in funcs) else []) + (
            [POOL_INDEX_COLUMN] if args.rap_online else []
        )
        super().__init__(
            model=model,
            reward_funcs=funcs or None,
            args=args,
            train_dataset=self.rap_data.dataset,
            eval_dataset=eval_dataset,
            **kwargs,
        )

        # Distinct prompts in one generation batch (all processes): the pool can never be smaller. Checked when RAP
        # chooses the rows (selection, online pool); rows given as they are train as under GRPOTrainer.
        prompts_per_generation = self.args.generation_batch_size // self.num_generations
        if (
            isinstance(self.rap_data.dataset, Dataset)
            and (self.args.rap_train_on == "selected" or self.args.rap_online)
            and len(self.rap_data.active) < prompts_per_generation
        ):
            raise RAPUserError(
                f"only {len(self.rap_data.active)} training rows, but one generation batch needs "
                f"{prompts_per_generation} distinct prompts (generation_batch_size={self.args.generation_batch_size}"
                f" / num_generations={self.num_generations}); lower the batch size or select more rows"
            )
        self._rap_correctness_index = self._resolve_correctness_index()
        if self.args.rap_online:
            self.rap_selector = OnlineSelector(
                self.rap_data.active,
                self.rap_data.reserve,
                retire_after=self.args.rap_retire_after,
                retire_all_wrong=self.args.rap_retire_all_wrong,
                correct_threshold=self.args.rap_correct_threshold,
                min_pool=prompts_per_generation,
                shuffle=self.shuffle_dataset,
                seed=self.args.seed,
            )

    # ------------------------------------------------------------------------------------------- setup
    @staticmethod
    def _rap_config(model: Any, args: GRPOConfig | None) -> RAPGRPOConfig:
        """``args`` as a `RAPGRPOConfig`: RAP's defaults when None, the RAP features off for a plain `GRPOConfig`."""
        if args is None:
            # By design RAP's defaults, not a drop-in: `check_rap_requirements` explains when plain data meets them.
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            return RAPGRPOConfig(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-RAP-GRPO")
        if isinstance(args, RAPGRPOConfig):
            return args
        if isinstance(args, GRPOConfig):
            # TRL's own config asks for TRL's behaviour: the friendliest drop-in keeps every value and adds nothing.
            logger.info(
                "RAPGRPOTrainer got a plain GRPOConfig: training as GRPOTrainer would (rap_train_on='as_is', "
                "rap_accuracy_reward=False, rap_online=False); pass a RAPGRPOConfig to use RAP"
            )
            return RAPGRPOConfig.from_grpo_config(args)
        raise TypeError(f"RAPGRPOTrainer needs a RAPGRPOConfig or a GRPOConfig, got {type(args).__name__}")

    def _resolve_correctness_index(self) -> int:
        name = self.args.rap_correctness_reward
        if name is None:
            return (
                self.reward_func_names.index("accuracy_reward")
                if "accuracy_reward" in self.reward_func_names
                else 0
            )
        if name not in self.reward_func_names:
            raise RAPUserError(
                f"rap_correctness_reward={name!r} is not one of the reward functions {self.reward_func_names}"
            )
        return self.reward_func_names.index(name)

    # The private TRL hooks below are overridden on purpose; `trl_hooks.check_trl_hooks` guards their signatures.
    def _set_signature_columns_if_needed(self) -> None:
        # With remove_unused_columns=True TRL keeps only the prompt/image columns. `accuracy_reward` reads
        # `solution` and online RAP reads the pool index, so those survive too, but only when in use: otherwise
        # the reward functions would see a column GRPOTrainer drops.
        super()._set_signature_columns_if_needed()
        for column in self._rap_batch_columns:
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    # ----------------------------------------------------------------------------------------- online RAP
    def _get_train_sampler(self, dataset: Dataset | None = None) -> torch.utils.data.Sampler:
        if self.rap_selector is None:
            return super()._get_train_sampler(dataset)
        return OnlineRepeatSampler(
            self.rap_selector,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
        )

    def _calculate_rewards(
        self, inputs: list[dict[str, Any]], prompts: list, completions: list, completion_ids_list: list
    ) -> torch.Tensor:
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.rap_selector is not None and self.model.training:
            self._rap_observe(inputs, rewards_per_func)
        return rewards_per_func

    def _rap_observe(self, inputs: list[dict[str, Any]], rewards_per_func: torch.Tensor) -> None:
        """Feed the gathered rewards of one generation batch to the selector and log its metrics.

        ``rewards_per_func`` is already gathered across processes (process 0's rows first); gathering the
        local pool indices the same way aligns them, so every process sees the same (index, reward) list.
        """
        local = torch.tensor(
            [int(row[POOL_INDEX_COLUMN]) for row in inputs], dtype=torch.long, device=rewards_per_func.device
        )
        indices = gather(local).tolist()
        rewards = rewards_per_func[:, self._rap_correctness_index].float().cpu().tolist()
        update = self.rap_selector.observe(indices, rewards)
        self._rap_check_in_sync()
        for name, value in self.rap_selector.metrics().items():
            self._metrics["train"][name].append(value)
        if update.retired or update.blocked:
            logger.info(
                "RAP online: retired %s, replaced %s, blocked %s (pool %d, reserve left %d)",
                update.retired,
                update.replaced,
                update.blocked,
                len(self.rap_selector.active_pool),
                len(self.rap_selector.reserve),
            )

    def _rap_check_in_sync(self) -> None:
        """Fail loudly if the processes' selectors diverged: their chunks, hence the GRPO groups, would not match."""
        if self.accelerator.num_processes == 1:
            return
        fingerprint = torch.tensor(
            [self.rap_selector.fingerprint()], dtype=torch.long, device=self.accelerator.device
        )
        everyone = gather(fingerprint)
        if bool((everyone != everyone[0]).any()):
            raise RuntimeError(
                f"RAP online: the processes' selectors diverged (state checksums {everyone.tolist()}); the "
                "processes must see the same rewards in the same order"
            )

    def online_state(self) -> dict[str, Any] | None:
        """The selector's state plus the input-dataset rows it refers to (None offline)."""
        if self.rap_selector is None:
            return None
        source = self.rap_data.source_rows or []
        selector = self.rap_selector
        return {
            "selector": selector.state_dict(),
            "metrics": selector.metrics(),
            "retired_source_rows": [source[i] for i in selector.retired],
            "active_source_rows": [source[i] for i in selector.active_pool],
            "config": {
                "rap_retire_after": self.args.rap_retire_after,
                "rap_retire_all_wrong": self.args.rap_retire_all_wrong,
                "rap_correct_threshold": self.args.rap_correct_threshold,
            },
        }

    def save_online_state(self, directory: str | os.PathLike[str]) -> Path | None:
        """Write `online_state` to ``directory/rap_online_state.json`` (main process only; None offline)."""
        state = self.online_state()
        if state is None or not self.args.should_save:
            return None
        from rap_hf.scoring.checkpointing import atomic_write

        path = Path(directory) / ONLINE_STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temporary file, fsync, rename: a crash mid-write leaves the previous state or the new one, never a
        # torn file that would make the resume fail.
        atomic_write(path, json.dumps(state).encode())
        return path

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.rap_selector is not None:
            folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            self.save_online_state(os.path.join(self._get_output_dir(trial=trial), folder))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.rap_selector is not None and checkpoint is not None:
            path = Path(checkpoint) / ONLINE_STATE_FILE
            if path.exists():
                # Every process reads the same file, so the selectors stay identical after a resume.
                self.rap_selector.load_state_dict(json.loads(path.read_text())["selector"])
                logger.info("RAP online: selector state restored from %s", path)
