"""`ScoringEngine`: RAP's batch scorer, the one public place where the model is run to compute score columns.

For a batch of rows: decode images and build both prompts row by row (a bad row gets `rap_error`, the rest go
on), generate M multimodal and M text-only rollouts in one batched call per arm, reward them, then run one
forward pass per row over a multimodal rollout to capture the final-layer attention for ACE
(`final_layer_attention`, also what the explorer's attention view runs).

`RAPDataFilter` drives it through `datasets.map`; `rap_hf.scoring.distributed` and `rap_hf.scoring.zero3` call
the same public methods (`score_batch`, `generate`, `ace_response`, `attention_forward_kwargs`).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from rap_hf.columns import NUMERIC_SCORE_COLUMNS, score_features
from rap_hf.config import RAPScoringConfig
from rap_hf.estimators import ace_normalized, ace_paper
from rap_hf.rewards import compute_rewards, normalize_solution
from rap_hf.scoring.attention import capture_final_layer_attention
from rap_hf.scoring.completion import is_prior_column, prior_row
from rap_hf.scoring.decisive import decisive_scores, wave_plan, wave_size
from rap_hf.scoring.images import ImageError, decode_image, normalize_image, processor_pixel_budget
from rap_hf.scoring.rollouts import (
    ARM_MM,
    ARM_TEXT,
    build_messages,
    completion_seed,
    generate_rollouts,
    processor_inputs,
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
class ScoringRow:
    """One row on its way through the engine: its inputs, then its rollouts and rewards per arm."""

    index: int
    images: list
    mm_prompt: str
    text_prompt: str
    solution: str
    error: str | None = None
    completions: dict[str, list[str]] = field(default_factory=dict)
    completion_ids: dict[str, list[list[int]]] = field(default_factory=dict)
    rewards: dict[str, list[float]] = field(default_factory=dict)
    # The raw prompt and the row's other columns: the reward function gets them as TRL passes them
    # (``prompts`` and one keyword per column), e.g. a choices column for multiple-choice answers.
    prompt: Any = None
    columns: dict[str, Any] = field(default_factory=dict)
    # In-generation ACE (`ace_capture="generation"`): the (L, L) final-layer attention of each multimodal
    # rollout, recorded while decoding; dropped once ACE has read the one `ace_response` picks.
    mm_attention: list[Any] | None = None
    # Completing a decisive run (`rap_hf.scoring.completion`): the row's decisive scores and completions.
    prior: dict[str, Any] | None = None


# Keyword names a reward function gets from scoring itself, so a dataset column cannot shadow them.
_RESERVED_REWARD_KWARGS = frozenset({"completions", "solution", "prompts", "completion_ids", "trainer_state"})


def error_reason(exc: BaseException) -> str:
    """A one-line reason for a row's `rap_error`: the message of an error about the data, else type + message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (ValueError, ImageError)) and text:
        return text[:300]
    return f"{type(exc).__name__}: {text}"[:300]


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether `model.forward` takes ``logits_to_keep`` (not every family does)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


@torch.inference_mode()
def final_layer_attention(
    model: Any, processor: Any, prompt_text: str, images: list, response_ids: list[int]
) -> torch.Tensor:
    """One forward pass over the multimodal prompt followed by `response_ids`, capturing the final decoder
    layer's attention over the response block: a head-averaged (L, L) float32 tensor on the CPU.

    This is the pass ACE reads; only the final layer's probabilities, only the response rows, are kept. The
    prompt is built exactly as for generation (`processor_inputs`: the processor's own extra inputs, no second
    bos), and the model builds its own attention mask from them (e.g. Gemma 3's bidirectional image blocks,
    sliding windows), which the capture then applies.
    """
    device = model.device
    inputs = processor_inputs(processor, [prompt_text], [list(images)]).to(device)
    prompt_shape = inputs["input_ids"].shape
    response = torch.tensor([response_ids], dtype=inputs["input_ids"].dtype, device=device)
    for key, value in list(inputs.items()):
        if key == "input_ids":
            inputs[key] = torch.cat([value, response], dim=1)
        elif isinstance(value, torch.Tensor) and value.shape == prompt_shape:
            # Per-token side inputs (attention_mask, mm_token_type_ids, Gemma 3's token_type_ids): response
            # tokens are attended-to text tokens.
            fill = 1 if key == "attention_mask" else 0
            inputs[key] = torch.cat([value, torch.full_like(response, fill, dtype=value.dtype)], dim=1)
    # The pass is for attention: the logits of one position are enough.
    kwargs = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
    with capture_final_layer_attention(model, num_rows=len(response_ids)) as recorder:
        model(**inputs, use_cache=False, **kwargs)
    if recorder.result is None:
        raise RuntimeError("the final attention layer was not called")
    return recorder.result


class ScoringEngine:
    """Scores batches of rows with a loaded model: rollouts in both arms, rewards, the ACE attention pass.

    Args:
        model, processor: a loaded VLM and its processor (see `rap_hf.scoring.loading`).
        config: the scoring configuration (a `RAPScoringConfig` or a whole `RAPConfig`).
        reward_fn: a resolved TRL-style reward function (`rap_hf.rewards.resolve_reward_fn`).

    `lockstep` is set by `rap_hf.scoring.distributed` under ZeRO-3 with sharded parameters: every process must
    then make the same sequence of model calls (see `rap_hf.scoring.zero3.Lockstep`). None: calls follow the
    data.
    """

    def __init__(self, model: Any, processor: Any, config: RAPScoringConfig, reward_fn: Any) -> None:
        self.model = model
        self.processor = processor
        self.config = config
        self.reward_fn = reward_fn
        self.max_image_pixels = config.max_image_pixels or processor_pixel_budget(processor)
        self.stats = ScoringStats()
        self.lockstep: Any = None

    # ------------------------------------------------------------------------------------------ batches

    def score_batch(
        self, batch: dict[str, list], indices: list[int], columns: dict[str, str], index_offset: int = 0
    ) -> dict[str, list]:
        """Score columns (`rap_hf.columns.score_features`) for the rows of `batch`, a `datasets` batch.

        `indices` are the rows' positions in the dataset being mapped and `index_offset` is added to them to
        get the global row index each completion is seeded by. `columns` maps the roles prompt/image/answer to
        column names (`rap_hf.columns.resolve_columns`). A row that cannot be scored gets its reason in
        `rap_error` and NaN scores; the others are unaffected.
        """
        rows = [self.prepare_row(batch, i, index_offset + idx, columns) for i, idx in enumerate(indices)]
        valid = [r for r in rows if r.error is None]
        if any(r.prior is not None for r in rows):
            self.complete_text_arm(valid)
        elif self.config.text_arm == "decisive":
            self.generate_decisive(valid)
        else:
            for arm in (ARM_MM, ARM_TEXT):
                self.generate_arm(valid, arm)
            valid = [r for r in rows if r.error is None]
            self.reward(valid)
        if self.lockstep is not None:
            self.lockstep.begin_attention_passes(self, rows)
        out: dict[str, list] = {name: [] for name in score_features(self.config.keep_completions)}
        for row in rows:
            scores = self.row_scores(row) if row.error is None else None
            if scores is None:
                scores = self._error_scores(row)
            for name in out:
                out[name].append(scores[name])
            self.stats.rows += 1
        if self.lockstep is not None:
            self.lockstep.end_attention_passes(self)
        return out

    def _error_scores(self, row: ScoringRow) -> dict[str, Any]:
        self.stats.errors += 1
        reason = row.error.split(":")[0]
        self.stats.error_reasons[reason] = self.stats.error_reasons.get(reason, 0) + 1
        scores: dict[str, Any] = {name: math.nan for name in NUMERIC_SCORE_COLUMNS}
        if self.config.keep_completions:
            scores["rap_completions_mm"] = row.completions.get(ARM_MM, [])
            scores["rap_completions_text"] = row.completions.get(ARM_TEXT, [])
        scores["rap_error"] = row.error
        return scores

    # ------------------------------------------------------------------------------------------ rows

    def prepare_row(self, batch: dict[str, list], i: int, index: int, columns: dict[str, str]) -> ScoringRow:
        """Decode row `i` of `batch` and render both prompts; a failure is recorded in the row's `error`."""
        row = ScoringRow(index=index, images=[], mm_prompt="", text_prompt="", solution="")
        row.prior = prior_row(batch, i)
        if row.prior is not None and row.prior["rap_error"] is not None:
            # The decisive run's error stands (a full run fails the same row the same way).
            row.completions = {
                ARM_MM: list(row.prior["rap_completions_mm"] or []),
                ARM_TEXT: list(row.prior["rap_completions_text"] or []),
            }
            row.error = row.prior["rap_error"]
            return row
        try:
            value = batch[columns["image"]][i]
            values = value if isinstance(value, (list, tuple)) else [value]
            if not values or all(v is None for v in values):
                raise ImageError("missing image")
            budget = self.max_image_pixels
            row.images = [normalize_image(decode_image(v, target_pixels=budget), budget) for v in values]
            solution = normalize_solution(batch[columns["answer"]][i])
            if solution is None:
                raise ValueError("missing or empty answer")
            row.solution = solution
            prompt = batch[columns["prompt"]][i]
            row.prompt = prompt
            skip = _RESERVED_REWARD_KWARGS | {columns["image"], columns["prompt"], columns["answer"]}
            row.columns = {
                name: column[i]
                for name, column in batch.items()
                if name not in skip and not is_prior_column(name)
            }
            system = self.config.system_prompt
            row.mm_prompt = render_prompt(
                self.processor,
                build_messages(prompt, len(row.images), with_images=True, system_prompt=system),
            )
            row.text_prompt = render_prompt(
                self.processor, build_messages(prompt, 0, with_images=False, system_prompt=system)
            )
        except Exception as exc:  # each row fails alone; the reason is kept with the row
            row.error = error_reason(exc)
        return row

    def generate_decisive(self, rows: list[ScoringRow]) -> None:
        """Decisive mode (``text_arm="decisive"``, docs/scoring.md#decisive-scoring): every multimodal rollout,
        then the text-only arm. With ``decisive_waves=1`` each row whose decision is not settled yet (``acc_mm
        >= lambda_c``) gets all M at once. With 2, it first gets the fewest rollouts that could settle its CDE
        decision (`rap_hf.scoring.decisive.wave_size`), then, if still unsettled, the rest of its M. Never
        more waves: each is one more ``generate`` call, whose fixed cost outweighs the sequences it saves
        (benchmarks/cost.py). Either way a row's rollouts do not depend on its batch, and rollout k of a row is
        seeded as in a full run, so its text-only completions are a prefix of the full run's."""
        if self.lockstep is not None:
            raise RuntimeError(
                "text_arm='decisive' is not supported under ZeRO-3 lock-step scoring (processes would make "
                "different numbers of model calls); use text_arm='full'"
            )
        self.generate_arm(rows, ARM_MM)
        rows = [r for r in rows if r.error is None]
        self.reward(rows, arms=(ARM_MM,))
        num_rollouts, lambda_c = self.config.num_rollouts, self.config.decisive_threshold()
        for row in rows:
            row.completions[ARM_TEXT], row.completion_ids[ARM_TEXT], row.rewards[ARM_TEXT] = [], [], []
        for last_wave in wave_plan(self.config.decisive_waves):
            wave, indices = [], []
            for row in rows:
                if row.error is not None:
                    continue
                size = wave_size(
                    row.rewards[ARM_MM], row.rewards[ARM_TEXT], num_rollouts, lambda_c, last_wave
                )
                if size:
                    done = len(row.completions[ARM_TEXT])
                    wave.append(row)
                    indices.append(list(range(done, done + size)))
            if not wave:
                return
            self.generate_arm(wave, ARM_TEXT, rollout_indices=indices)
            self.reward([r for r in wave if r.error is None], arms=(ARM_TEXT,))

    def complete_text_arm(self, rows: list[ScoringRow]) -> None:
        """Completing a decisive run (`rap_hf.scoring.completion`): re-reward the stored completions and generate
        the text-only rollouts the decisive run skipped (rollout k seeded as in a full run), so that every row
        ends with the M text-only rollouts of a full run."""
        if self.lockstep is not None:
            raise RuntimeError(
                "completing a decisive run is not supported under ZeRO-3 lock-step scoring (processes would make "
                "different numbers of model calls)"
            )
        for row in rows:
            for arm, name in ((ARM_MM, "rap_completions_mm"), (ARM_TEXT, "rap_completions_text")):
                row.completions[arm] = list(row.prior[name])
                row.completion_ids[arm] = [[] for _ in row.completions[arm]]  # ACE is carried over
        self.reward(rows)
        todo = [
            r for r in rows if r.error is None and len(r.completions[ARM_TEXT]) < self.config.num_rollouts
        ]
        indices = [list(range(len(r.completions[ARM_TEXT]), self.config.num_rollouts)) for r in todo]
        self.generate_arm(todo, ARM_TEXT, rollout_indices=indices)
        self.reward([r for r in todo if r.error is None], arms=(ARM_TEXT,))

    def generate_arm(
        self, rows: list[ScoringRow], arm: str, rollout_indices: list[list[int]] | None = None
    ) -> None:
        """Generate the rollouts of one arm for `rows`, batched; on a batch failure, retry row by row so one
        bad row only fails itself. `rollout_indices[i]`: which rollouts of row i to generate (appended to its
        completions), by default all M."""
        if self.lockstep is not None:
            start = time.perf_counter()
            self.lockstep.generate_arm(self, rows, arm)
            self.stats.add_generation(arm, time.perf_counter() - start)
            return
        if not rows:
            return
        start = time.perf_counter()
        try:
            self.generate(rows, arm, rollout_indices=rollout_indices)
        except Exception as exc:
            if len(rows) == 1:
                rows[0].error = f"generation failed: {error_reason(exc)}"
            else:
                # One row can break a whole batch (e.g. an image the processor rejects): retry row by row.
                logger.warning(
                    "batched %s generation failed (%s); retrying row by row", arm, error_reason(exc)
                )
                for i, row in enumerate(rows):
                    try:
                        self.generate(
                            [row],
                            arm,
                            rollout_indices=None if rollout_indices is None else [rollout_indices[i]],
                        )
                    except Exception as row_exc:
                        row.error = f"generation failed: {error_reason(row_exc)}"
        self.stats.add_generation(arm, time.perf_counter() - start)

    def generate(
        self,
        rows: list[ScoringRow],
        arm: str,
        synced_gpus: bool | None = None,
        rollout_indices: list[list[int]] | None = None,
    ) -> None:
        """One batched generation of `arm` for `rows` (raises on failure), each completion seeded by
        (seed, row index, arm, rollout). `rollout_indices[i]`: the rollouts of row i to generate, appended to
        its completions (decisive mode); None: all M, replacing them."""
        cfg = self.config
        if rollout_indices is None:
            rollout_indices = [list(range(cfg.num_rollouts)) for _ in rows]
        rollouts = generate_rollouts(
            self.model,
            self.processor,
            [r.mm_prompt if arm == ARM_MM else r.text_prompt for r in rows],
            [r.images for r in rows] if arm == ARM_MM else None,
            [
                [completion_seed(cfg.seed, r.index, arm, k) for k in ks]
                for r, ks in zip(rows, rollout_indices, strict=True)
            ],
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            synced_gpus=synced_gpus,
            capture_attention=self.captures_ace_in_generation(arm),
            # Opt-in; not under ZeRO-3 lock-step, whose filler generations mirror the per-rollout call.
            shared_prefill=cfg.prefill == "shared" and self.lockstep is None,
        )
        self.stats.generated_tokens += rollouts.num_generated_tokens
        by_arm = self.stats.generated_tokens_by_arm
        by_arm[arm] = by_arm.get(arm, 0) + rollouts.num_generated_tokens
        for row, texts, ids, ks in zip(
            rows, rollouts.texts, rollouts.token_ids, rollout_indices, strict=True
        ):
            if ks and ks[0] > 0:  # a later wave: the earlier rollouts of the row are kept
                row.completions[arm] = row.completions[arm] + texts
                row.completion_ids[arm] = row.completion_ids[arm] + ids
            else:
                row.completions[arm] = texts
                row.completion_ids[arm] = ids
        if rollouts.attention is not None:
            for row, attention in zip(rows, rollouts.attention, strict=True):
                row.mm_attention = attention

    def captures_ace_in_generation(self, arm: str) -> bool:
        """Whether the multimodal rollouts record ACE's attention while decoding (not under ZeRO-3 lockstep,
        whose processes must make the same model calls: it keeps the second pass)."""
        cfg = self.config
        return (
            arm == ARM_MM
            and cfg.compute_ace
            and getattr(cfg, "ace_capture", "second_pass") == "generation"
            and self.lockstep is None
        )

    def reward(self, rows: list[ScoringRow], arms: tuple[str, ...] = (ARM_MM, ARM_TEXT)) -> None:
        """Reward every completion of `arms` (both by default) against the row's solution (one call per arm)."""
        start = time.perf_counter()
        for arm in arms:
            completions = [c for r in rows for c in r.completions[arm]]
            solutions = [r.solution for r in rows for _ in r.completions[arm]]
            if not completions:
                continue
            kwargs = {"prompts": [r.prompt for r in rows for _ in r.completions[arm]]}
            for name in rows[0].columns:
                kwargs[name] = [r.columns.get(name) for r in rows for _ in r.completions[arm]]
            try:
                rewards = compute_rewards(self.reward_fn, completions, solutions, **kwargs)
            except Exception as exc:
                for row in rows:
                    row.error = f"reward function failed: {error_reason(exc)}"
                return
            start_row = 0
            for row in rows:
                n = len(row.completions[arm])
                row.rewards[arm] = rewards[start_row : start_row + n]
                start_row += n
        self.stats.seconds_rewards += time.perf_counter() - start

    def row_scores(self, row: ScoringRow) -> dict[str, Any] | None:
        """The score columns of a generated and rewarded row; None (with `row.error` set) if ACE fails."""
        # From the rewards in exact arithmetic: with 0/1 rewards the scores sit exactly on the 1/M grid, so a
        # CDE of 1/5 is the float 0.2 and compares equal to lambda_c=0.2 (see rap_hf.estimators.cde).
        # decisive_scores: a complete row gets exactly rollout_scores' values; a row whose text-only arm
        # stopped early (decisive mode) gets rap_cde as a bound (rap_hf.scoring.decisive).
        full = self.config.text_arm == "full"
        reward_scores = decisive_scores(
            row.rewards[ARM_MM],
            row.rewards[ARM_TEXT],
            len(row.rewards[ARM_TEXT]) if full else self.config.num_rollouts,
            self.config.decisive_threshold(),
        )
        ace, ace_norm = math.nan, math.nan
        if row.prior is not None:  # a completed decisive run: the multimodal arm, hence ACE, is unchanged
            ace, ace_norm = row.prior["rap_ace"], row.prior["rap_ace_norm"]
        elif self.config.compute_ace:
            try:
                ace, ace_norm = self.ace_scores(row)
            except Exception as exc:
                row.error = f"attention pass failed: {error_reason(exc)}"
                return None
        scores: dict[str, Any] = {
            **reward_scores,
            "rap_ace": ace,
            "rap_ace_norm": ace_norm,
            # Known at selection time, so ACE can leave short responses unjudged (docs/method.md §3).
            "rap_ace_length": (
                row.prior["rap_ace_length"] if row.prior is not None else float(len(self.ace_response(row)))
            ),
            "rap_error": None,
        }
        if self.config.keep_completions:
            scores["rap_completions_mm"] = row.completions[ARM_MM]
            scores["rap_completions_text"] = row.completions[ARM_TEXT]
        return scores

    # ------------------------------------------------------------------------------------------ ACE

    def ace_scores(self, row: ScoringRow) -> tuple[float, float]:
        """(paper ACE, normalised ACE) of the rollout `ace_response` picks; NaN for an empty response."""
        start = time.perf_counter()
        response = self.ace_response(row)
        captured, row.mm_attention = row.mm_attention, None
        if not response:
            return math.nan, math.nan
        if captured is not None:
            attn = captured[self.ace_choice(row)]
            if attn.shape != (len(response), len(response)):
                raise RuntimeError(
                    f"captured attention {tuple(attn.shape)} does not fit a {len(response)}-token response"
                )
        else:
            if self.lockstep is not None:
                self.lockstep.forwards_done += 1
            attn = final_layer_attention(self.model, self.processor, row.mm_prompt, row.images, response)
        self.stats.seconds_attention += time.perf_counter() - start
        sigma, span = self.config.sigma, self.config.ace_min_span
        return ace_paper(attn, sigma, span), ace_normalized(attn, sigma, span)

    @staticmethod
    def ace_response(row: ScoringRow) -> list[int]:
        """Token ids of the rollout ACE reads: the first correct multimodal one if any, else the first (our
        reading)."""
        return row.completion_ids[ARM_MM][ScoringEngine.ace_choice(row)]

    @staticmethod
    def ace_choice(row: ScoringRow) -> int:
        """Index of the multimodal rollout ACE reads (see `ace_response`)."""
        rewards = row.rewards[ARM_MM]
        return next((k for k, r in enumerate(rewards) if r > 0), 0)

    def attention_forward_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of an attention-only forward pass (one position of logits, when the model
        accepts it): for callers that must mirror the ACE pass's call, such as ZeRO-3's filler passes."""
        return {"logits_to_keep": 1} if accepts_logits_to_keep(self.model) else {}
