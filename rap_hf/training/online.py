"""Online RAP: retire samples the policy has saturated and replace them from a reserve, while training.

Static RAP selects once, with the untrained model. During GRPO the policy improves and some selected samples
become trivial (every rollout correct) or stay hopeless (every rollout wrong): both give a group with zero
reward variance, so GRPO gets zero advantage from them and spends generation compute for nothing. The trainer
already rolls out ``num_generations`` completions per prompt, so it measures each sample's group accuracy for
free. `OnlineSelector` turns those measurements into pool decisions:

* every sample in the *active pool* keeps a running group accuracy and two streak counters: consecutive
  visits whose group was all-correct, and consecutive visits whose group was all-wrong;
* when a streak reaches ``retire_after`` the sample is *retired* (all-wrong retirement can be switched off);
* the next sample of the *reserve* (rows static selection rejected that are still challenging, hardest first
  in DRM's order, see `build_reserve`) takes its place and is visited early;
* with the reserve exhausted, a retired sample leaves without replacement, but never below ``min_pool``
  active samples (the trainer needs that many distinct prompts per generation batch); a retirement that would
  go below it is *blocked* and the sample stays.

The class is pure Python (no torch, no distributed calls): the trainer gathers every process's rewards first
and feeds the same gathered values to every process's selector, so all processes take the same decisions
(the trainer checks this with `fingerprint`). Indices are positions in the trainer's training dataset.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["OnlineSelector", "OnlineUpdate", "build_reserve"]


def build_reserve(
    candidates: Iterable[int], acc_mm: Sequence[float] | np.ndarray, cde: Sequence[float] | np.ndarray
) -> list[int]:
    """Order reserve candidates the way DRM orders its replacement candidates, keeping the challenging ones.

    Args:
        candidates: row positions that static selection did not select and did not mark as errors.
        acc_mm: multimodal group pass rate of every row (indexed by position); NaN for unscored rows.
        cde: causal discrepancy of every row (indexed by position).

    Returns:
        The candidates with ``0 < acc_mm < 1`` (an all-correct or all-wrong group gives GRPO zero advantage,
        and a NaN pass rate means the row was not scored), ordered by ``acc_mm`` ascending (hardest first),
        then ``cde`` descending (most image-dependent first), then position ascending.
    """
    acc = np.asarray(acc_mm, dtype=np.float64)
    disc = np.asarray(cde, dtype=np.float64)
    rows = np.asarray(sorted(set(int(i) for i in candidates)), dtype=np.int64)
    if rows.size == 0:
        return []
    with np.errstate(invalid="ignore"):
        keep = (acc[rows] > 0) & (acc[rows] < 1)
    rows = rows[keep]
    # NaN cde sorts last among equal acc_mm (lexsort puts NaN last; the negation keeps NaN as NaN).
    order = np.lexsort((rows, -disc[rows], acc[rows]))
    return rows[order].tolist()


@dataclass
class OnlineUpdate:
    """What one `OnlineSelector.observe` call decided.

    Attributes:
        observed: number of distinct samples whose group was observed.
        group_accuracy: sample -> fraction of its rollouts judged correct in this observation.
        retired: samples retired by this observation, in decision order (ascending sample index).
        replaced: ``(retired, newcomer)`` pairs, in decision order; a retired sample without a pair left
            without replacement (reserve exhausted).
        blocked: samples that met the retirement rule but stayed, because the pool is at ``min_pool`` and the
            reserve is empty.
        batch_difficulty: ``1 - mean(group_accuracy)`` over the observed samples (NaN when none).
    """

    observed: int = 0
    group_accuracy: dict[int, float] = field(default_factory=dict)
    retired: list[int] = field(default_factory=list)
    replaced: list[tuple[int, int]] = field(default_factory=list)
    blocked: list[int] = field(default_factory=list)
    batch_difficulty: float = math.nan


class OnlineSelector:
    """The active pool of online RAP, its reserve, and the retire/replace rule (see the module docstring).

    Args:
        active: initial active pool (sample indices), e.g. the rows static selection selected.
        reserve: replacement candidates, in the order they are used (see `build_reserve`).
        retire_after: a sample is retired after this many consecutive all-correct (or all-wrong) visits.
        retire_all_wrong: also retire samples that were all-wrong ``retire_after`` visits in a row.
        correct_threshold: a rollout counts as correct when its correctness reward is ``>=`` this value.
        min_pool: the pool never shrinks below this many samples (distinct prompts per generation batch).
        shuffle: visit the pool in a fresh random order every pass (False: ascending index order).
        seed: seed of the pass order; processes with the same seed draw the same chunks.

    Iteration: `next_chunk` hands out chunks of distinct active samples. A *pass* walks the whole pool in one
    (seeded) order; a chunk that straddles two passes takes the end of the old one and the start of the new
    one, whose order puts the straddling chunk's samples last. So with a fixed pool the draws are a plain
    concatenation of permutations of the pool: every sample once per pass, never twice in one chunk.
    Newcomers go to the front of the current pass, so their first measurement comes early.
    """

    def __init__(
        self,
        active: Iterable[int],
        reserve: Iterable[int] = (),
        *,
        retire_after: int = 2,
        retire_all_wrong: bool = True,
        correct_threshold: float = 1.0,
        min_pool: int = 1,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        active_list = [int(i) for i in active]
        reserve_list = [int(i) for i in reserve]
        if len(set(active_list)) != len(active_list):
            raise ValueError("OnlineSelector: the active pool has duplicate indices")
        if set(active_list) & set(reserve_list) or len(set(reserve_list)) != len(reserve_list):
            raise ValueError("OnlineSelector: the reserve must be distinct and disjoint from the active pool")
        if not isinstance(retire_after, int) or retire_after < 1:
            raise ValueError(f"retire_after must be an integer >= 1, got {retire_after!r}")
        if not math.isfinite(correct_threshold):
            raise ValueError(f"correct_threshold must be finite, got {correct_threshold!r}")
        if min_pool < 1:
            raise ValueError(f"min_pool must be >= 1, got {min_pool!r}")
        if len(active_list) < min_pool:
            raise ValueError(
                f"OnlineSelector: the active pool has {len(active_list)} samples, fewer than min_pool={min_pool} "
                "(the distinct prompts one generation batch needs)"
            )
        self.retire_after = retire_after
        self.retire_all_wrong = retire_all_wrong
        self.correct_threshold = float(correct_threshold)
        self.min_pool = int(min_pool)
        self.shuffle = shuffle
        self.seed = seed
        self.initial_pool_size = len(active_list)

        self._active: set[int] = set(active_list)
        self._reserve: deque[int] = deque(reserve_list)
        self._queue: deque[int] = deque()  # the rest of the current pass
        self._rng = random.Random(seed)
        self._visits: dict[int, int] = {}
        self._accuracy_sum: dict[int, float] = {}
        self._correct_streak: dict[int, int] = {}
        self._wrong_streak: dict[int, int] = {}
        self.retired: list[int] = []
        self.replacements: list[tuple[int, int]] = []
        self.num_blocked = 0
        self.last_batch_difficulty = math.nan

    # ---------------------------------------------------------------------------------------------- state
    @property
    def active_pool(self) -> list[int]:
        """The active samples, ascending."""
        return sorted(self._active)

    @property
    def reserve(self) -> list[int]:
        """The reserve samples not used yet, in the order they will be used."""
        return list(self._reserve)

    def is_active(self, index: int) -> bool:
        return index in self._active

    def visits(self, index: int) -> int:
        """How many times the group of ``index`` has been observed."""
        return self._visits.get(index, 0)

    def running_accuracy(self, index: int) -> float:
        """Mean group accuracy of ``index`` over its visits (NaN before the first)."""
        visits = self._visits.get(index, 0)
        return self._accuracy_sum[index] / visits if visits else math.nan

    def metrics(self) -> dict[str, float]:
        """Scalars for logging: pool size, cumulative retirements/replacements, reserve left, last difficulty."""
        return {
            "rap/active_pool": float(len(self._active)),
            "rap/retired": float(len(self.retired)),
            "rap/replaced": float(len(self.replacements)),
            "rap/reserve_left": float(len(self._reserve)),
            "rap/retire_blocked": float(self.num_blocked),
            "rap/batch_difficulty": self.last_batch_difficulty,
        }

    # ------------------------------------------------------------------------------------------ iteration
    def _new_pass(self, in_chunk: list[int]) -> None:
        # The samples of the chunk being drawn go last, so the chunk stays distinct and every active sample
        # still appears exactly once in the new pass.
        order = sorted(self._active.difference(in_chunk))
        if self.shuffle:
            self._rng.shuffle(order)
        self._queue = deque(order + [i for i in in_chunk if i in self._active])

    def next_chunk(self, size: int) -> list[int]:
        """The next ``size`` distinct active samples (see the class docstring for the pass order)."""
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        if size > len(self._active):
            raise ValueError(
                f"cannot draw {size} distinct samples from an active pool of {len(self._active)}"
            )
        chunk: list[int] = []
        new_passes = 0
        while len(chunk) < size:
            if not self._queue:
                new_passes += 1
                if new_passes > 1:  # cannot happen while size <= len(active); guards an endless loop
                    raise RuntimeError("OnlineSelector: a fresh pass could not fill one chunk")
                self._new_pass(in_chunk=chunk)
            index = self._queue.popleft()
            if index in self._active and index not in chunk:
                chunk.append(index)
        return chunk

    # ------------------------------------------------------------------------------------------- feedback
    def observe(self, indices: Sequence[int], rewards: Sequence[float]) -> OnlineUpdate:
        """Record one generation batch's group outcomes and retire/replace samples.

        Args:
            indices: the sample index of every rollout (gathered across processes; a sample's rollouts may
                be anywhere in the list).
            rewards: the correctness reward of every rollout, aligned with ``indices``. NaN (a reward function
                that returned None) is ignored; a sample with no valid reward is not counted as visited.

        Returns:
            The decisions taken (`OnlineUpdate`). Samples are processed in ascending index order, so the
            decisions do not depend on how the rollouts were ordered.
        """
        if len(indices) != len(rewards):
            raise ValueError(f"got {len(indices)} indices but {len(rewards)} rewards")
        groups: dict[int, list[float]] = {}
        for index, reward in zip(indices, rewards, strict=True):
            reward = float(reward)
            if math.isnan(reward):
                groups.setdefault(int(index), [])
                continue
            groups.setdefault(int(index), []).append(reward)

        update = OnlineUpdate()
        for index in sorted(groups):
            values = groups[index]
            if not values:
                continue
            accuracy = sum(v >= self.correct_threshold for v in values) / len(values)
            update.group_accuracy[index] = accuracy
            self._visits[index] = self._visits.get(index, 0) + 1
            self._accuracy_sum[index] = self._accuracy_sum.get(index, 0.0) + accuracy
            correct = self._correct_streak.get(index, 0) + 1 if accuracy == 1.0 else 0
            wrong = self._wrong_streak.get(index, 0) + 1 if accuracy == 0.0 else 0
            self._correct_streak[index] = correct
            self._wrong_streak[index] = wrong
            # A sample observed after it left (its chunk was drawn before the decision) is only recorded.
            if index not in self._active:
                continue
            if correct >= self.retire_after or (self.retire_all_wrong and wrong >= self.retire_after):
                self._retire(index, update)

        update.observed = len(update.group_accuracy)
        if update.group_accuracy:
            mean_accuracy = sum(update.group_accuracy.values()) / len(update.group_accuracy)
            update.batch_difficulty = 1.0 - mean_accuracy
        self.last_batch_difficulty = update.batch_difficulty
        return update

    def _retire(self, index: int, update: OnlineUpdate) -> None:
        if self._reserve:
            newcomer = self._reserve.popleft()
            self._active.discard(index)
            self._active.add(newcomer)
            self._queue.appendleft(newcomer)
            self.retired.append(index)
            self.replacements.append((index, newcomer))
            update.retired.append(index)
            update.replaced.append((index, newcomer))
        elif len(self._active) > self.min_pool:
            self._active.discard(index)
            self.retired.append(index)
            update.retired.append(index)
        else:
            self.num_blocked += 1
            update.blocked.append(index)

    # ------------------------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: pool, reserve, pass queue, per-sample statistics, RNG state."""
        rng_version, rng_internal, rng_gauss = self._rng.getstate()
        return {
            "active": sorted(self._active),
            "reserve": list(self._reserve),
            "queue": list(self._queue),
            "visits": {str(k): v for k, v in self._visits.items()},
            "accuracy_sum": {str(k): v for k, v in self._accuracy_sum.items()},
            "correct_streak": {str(k): v for k, v in self._correct_streak.items()},
            "wrong_streak": {str(k): v for k, v in self._wrong_streak.items()},
            "retired": list(self.retired),
            "replacements": [list(pair) for pair in self.replacements],
            "num_blocked": self.num_blocked,
            "initial_pool_size": self.initial_pool_size,
            "rng_state": [rng_version, list(rng_internal), rng_gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (JSON round-trips are fine: keys may be strings)."""
        self._active = {int(i) for i in state["active"]}
        self._reserve = deque(int(i) for i in state["reserve"])
        self._queue = deque(int(i) for i in state["queue"])
        self._visits = {int(k): int(v) for k, v in state["visits"].items()}
        self._accuracy_sum = {int(k): float(v) for k, v in state["accuracy_sum"].items()}
        self._correct_streak = {int(k): int(v) for k, v in state["correct_streak"].items()}
        self._wrong_streak = {int(k): int(v) for k, v in state["wrong_streak"].items()}
        self.retired = [int(i) for i in state["retired"]]
        self.replacements = [(int(a), int(b)) for a, b in state["replacements"]]
        self.num_blocked = int(state["num_blocked"])
        self.initial_pool_size = int(state["initial_pool_size"])
        version, internal, gauss = state["rng_state"]
        self._rng.setstate((version, tuple(internal), gauss))

    def fingerprint(self) -> int:
        """A 32-bit checksum of the decision state; equal on every process when they decided identically."""
        summary = (
            sorted(self._active),
            list(self._reserve),
            list(self._queue),
            len(self.retired),
            sorted(self._correct_streak.items()),
            sorted(self._wrong_streak.items()),
        )
        return zlib.crc32(repr(summary).encode())
