"""RAP configuration, split by the score/keep line: `RAPScoringConfig` (what running the model computes),
`RAPSelectionConfig` (which scored rows are kept; no model needed), and `RAPConfig`, both in one.

Every field is documented once, here. Paper-faithful values are the defaults (see docs/method.md); the fields
marked "our reading" are choices the paper leaves open. A scored dataset can be re-selected with another
`RAPSelectionConfig` without running the model again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from rap_hf.errors import RAPUserError

#: "paper": the paper's product score (rap_ace), responses shorter than `ace_min_length` not judged;
#: "normalized": the length-normalised score (rap_ace_norm), same guard; "paper_exact": the paper's rule as
#: written, every response judged (docs/method.md §3).
ACE_MODES = ("paper", "normalized", "paper_exact")

_Config = TypeVar("_Config", bound="_ConfigBase")


class _ConfigBase:
    """What the three configs share: validation on construction, dict round trips, field names."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `RAPUserError` (a `ValueError`) naming the field when a value is out of range or fields
        conflict."""
        errors = self._errors()
        if errors:
            raise RAPUserError(f"Invalid {type(self).__name__}: " + "; ".join(errors))

    def _errors(self) -> list[str]:
        return []

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of this config's fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[_Config], values: dict[str, Any]) -> _Config:
        """Build from a dict (e.g. parsed YAML); unknown keys raise a `RAPUserError` listing the valid ones."""
        names = set(cls.field_names())
        unknown = sorted(set(values) - names)
        if unknown:
            raise RAPUserError(f"Unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**values)


@dataclass
class RAPScoringConfig(_ConfigBase):
    """How `RAPDataFilter` scores: rollouts, the ACE attention pass, and which columns it reads and writes.

    Every field but `batch_size` changes the score columns, so all of them except `batch_size` are part of a
    scoring run's fingerprint (`fingerprint_values`): results do not depend on how rows are batched.
    """

    #: Fields that change how the work is split, not what is computed. (Not a field: HfArgumentParser would
    #: turn field metadata into argparse options.)
    LAYOUT_FIELDS: ClassVar[tuple[str, ...]] = ("batch_size",)

    # ---- rollouts (scoring) ----
    num_rollouts: int = field(
        default=5,
        metadata={"help": "Completions sampled per sample in each arm (with and without the image): M."},
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Maximum new tokens per completion."})
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the rollouts; 0 means greedy decoding."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus-sampling mass of the rollouts, in (0, 1]."})
    batch_size: int = field(
        default=8,
        metadata={
            "help": "Samples per `datasets.map` batch. Each batch generates batch_size * num_rollouts sequences "
            "per arm at once. Results do not depend on it.",
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "Base seed. Each completion's randomness is derived from (seed, row index, arm, rollout), so a "
            "row gets the same completions whatever batch or process it lands in."
        },
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "Optional system message prepended to every prompt (e.g. an instruction to put the final "
            "answer in \\boxed{}). Not added when the prompt already has a system message."
        },
    )
    max_image_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Images with more pixels than this are downscaled (aspect kept, already while decoding) before "
            "the processor sees them. None: the processor's own budget (its max_pixels; Qwen2-VL's "
            "size['longest_edge'], a pixel count; 4x the largest output of a resizing processor)."
        },
    )

    # ---- decision-aware scoring (docs/scoring.md#decisive-scoring) ----
    text_arm: Literal["full", "decisive"] = field(
        default="full",
        metadata={
            "help": "'full': M text-only rollouts for every row. 'decisive': the multimodal arm is complete; the "
            "text-only arm runs only for rows with rap_acc_mm >= the CDE threshold, in waves, and stops per row as "
            "soon as the CDE decision at that threshold is settled (rap_text_rollouts says how many ran; "
            "rap_cde_bound marks rap_cde as a bound). Cheaper; re-selection at another lambda_c may be refused."
        },
    )
    decisive_lambda_c: float | None = field(
        default=None,
        metadata={
            "help": "The CDE threshold decisive scoring settles decisions at. None: the RAPConfig's lambda_c when "
            "scoring is given a whole RAPConfig, else 0.5 (the paper's). Ignored when text_arm='full'."
        },
    )
    decisive_waves: int = field(
        default=1,
        metadata={
            "help": "Text-only generate calls per batch in decisive mode. 1 (default): all M at once for every row "
            "with rap_acc_mm >= the threshold, none for the others (exact scores wherever the text arm ran). 2: "
            "first the fewest rollouts that could settle each row's decision, then the rest of M for rows still "
            "unsettled: fewer rollouts, one more call per batch, which on the reference model costs more than it "
            "saves at batch 32 and about as much at batch 8 (docs/scoring.md#cheaper-scoring). Ignored when "
            "text_arm='full'."
        },
    )

    # ---- ACE (scoring) ----
    sigma: float = field(
        default=2.0, metadata={"help": "ACE scale sigma in prod_i sigma * A[i, j] (paper: 2.0)."}
    )
    ace_min_span: int = field(
        default=1,
        metadata={"help": "Only attention columns j with at least this many rows i >= j count towards ACE."},
    )
    compute_ace: bool = field(
        default=True,
        metadata={"help": "Run the final-layer attention pass. When False, rap_ace/rap_ace_norm are NaN."},
    )
    ace_capture: Literal["generation", "second_pass"] = field(
        default="second_pass",
        metadata={
            "help": "How ACE's final-layer attention is obtained. 'second_pass' (default, the reference): one "
            "extra forward pass per row over the prompt and the chosen multimodal rollout, alone, so rap_ace is "
            "bitwise the same whatever the batch size. 'generation': recorded while the multimodal rollouts are "
            "decoded (final layer, head-averaged, response rows only: a (T, T) float32 matrix per sequence of "
            "the batch, T = max_new_tokens, kept as (L, L) for the M rollouts of a row until ACE picks one), so "
            "no second forward pass runs; it costs one extra decoding step. It agrees with the second pass to "
            "float tolerance, not bitwise (measured <= 1.4e-6 on rap_ace_norm, CPU float32), and depends on the "
            "batch at float-rounding level (~1e-9: the batched forward is not batch-invariant), so the mode is "
            "part of the fingerprint. Under ZeRO-3 lockstep scoring the second pass is always used."
        },
    )
    prefill: Literal["per_rollout", "shared"] = field(
        default="per_rollout",
        metadata={
            "help": "How the rollouts' prompts are encoded. 'per_rollout' (default, the reference): each of a "
            "row's sequences encodes its images and prefills the prompt itself. 'shared': once per row and arm, "
            "the KV cache expanded to the row's rollouts (docs/scoring.md#cheaper-scoring). The prefill then "
            "runs at another batch shape, so logits can differ at float-rounding level and a rare sampled "
            "token can flip; the mode is part of the fingerprint."
        },
    )

    # ---- columns and output ----
    keep_completions: bool = field(
        default=True,
        metadata={"help": "Keep the rollout texts in rap_completions_mm / rap_completions_text (auditable)."},
    )
    prompt_column: str = field(
        default="prompt",
        metadata={
            "help": "Question column: a string or a conversational list of messages (TRL's VLM format)."
        },
    )
    image_column: str = field(
        default="image",
        metadata={"help": "Image column (one image). When it is absent, a list column `images` is used."},
    )
    answer_column: str = field(default="solution", metadata={"help": "Ground-truth answer column."})

    def _errors(self) -> list[str]:
        errors: list[str] = []
        if not isinstance(self.num_rollouts, int) or self.num_rollouts < 1:
            errors.append(f"num_rollouts must be an integer >= 1, got {self.num_rollouts!r}")
        if self.max_new_tokens < 1:
            errors.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            errors.append(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            errors.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.batch_size < 1:
            errors.append(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.sigma <= 0:
            errors.append(f"sigma must be > 0, got {self.sigma!r}")
        if self.prefill not in ("per_rollout", "shared"):
            errors.append(f"prefill must be 'per_rollout' or 'shared', got {self.prefill!r}")
        if self.ace_capture not in ("generation", "second_pass"):
            errors.append(f"ace_capture must be 'generation' or 'second_pass', got {self.ace_capture!r}")
        if self.ace_min_span < 1:
            errors.append(f"ace_min_span must be >= 1, got {self.ace_min_span!r}")
        if self.max_image_pixels is not None and self.max_image_pixels < 1:
            errors.append(f"max_image_pixels must be >= 1, got {self.max_image_pixels!r}")
        if self.text_arm not in ("full", "decisive"):
            errors.append(f"text_arm must be 'full' or 'decisive', got {self.text_arm!r}")
        if self.decisive_waves not in (1, 2):
            errors.append(f"decisive_waves must be 1 or 2, got {self.decisive_waves!r}")
        if self.decisive_lambda_c is not None and not -1 <= self.decisive_lambda_c <= 1:
            errors.append(f"decisive_lambda_c must be in [-1, 1], got {self.decisive_lambda_c!r}")
        return errors

    def decisive_threshold(self) -> float:
        """The CDE threshold decisive scoring settles at: `decisive_lambda_c`, else a `RAPConfig`'s `lambda_c`,
        else 0.5 (the paper's default)."""
        if self.decisive_lambda_c is not None:
            return float(self.decisive_lambda_c)
        return float(getattr(self, "lambda_c", 0.5))

    @classmethod
    def of(cls, config: RAPScoringConfig) -> RAPScoringConfig:
        """The scoring part of `config` (a `RAPConfig` or a `RAPScoringConfig`), as a `RAPScoringConfig`.

        In decisive mode the threshold is resolved (`decisive_threshold`), so a `RAPConfig`'s `lambda_c` is
        kept when only the scoring half travels on."""
        values = {name: getattr(config, name) for name in cls.field_names()}
        if values["text_arm"] == "decisive":
            values["decisive_lambda_c"] = config.decisive_threshold()
        return cls(**values)

    def fingerprint_values(self) -> dict[str, Any]:
        """The fields scores depend on (all but `LAYOUT_FIELDS`), for fingerprints.

        `text_arm` and `decisive_lambda_c` (resolved) appear only in decisive mode, and `decisive_waves` only
        there when it is 1, so full runs and two-wave decisive runs (the only decisive mode before the option
        existed) keep the fingerprints they had; likewise `ace_capture` appears only when it is not
        "second_pass" (in-generation ACE differs from the second pass at float tolerance, so it must not resume
        a second-pass run), and `prefill` only when it is "shared"."""
        values = {
            name: getattr(self, name)
            for name in RAPScoringConfig.field_names()
            if name not in RAPScoringConfig.LAYOUT_FIELDS
        }
        if self.ace_capture == "second_pass":
            # The reference ACE pass: the scores of runs from before `ace_capture` existed.
            del values["ace_capture"]
        if self.prefill == "per_rollout":
            del values["prefill"]  # likewise: the reference prefill
        if self.text_arm == "full":
            del values["text_arm"], values["decisive_lambda_c"], values["decisive_waves"]
        else:
            values["decisive_lambda_c"] = self.decisive_threshold()
            if self.decisive_waves == 2:
                del values["decisive_waves"]  # the two-wave runs from before the option existed
        return values


@dataclass
class RAPSelectionConfig(_ConfigBase):
    """How `select_cognitive_samples` keeps rows: the CDE and ACE thresholds, DRM, and an optional budget.

    Reads only the score columns: changing these fields never needs the model.
    """

    # ---- selection (no model) ----
    lambda_c: float = field(
        default=0.5, metadata={"help": "CDE threshold: keep a row only if rap_cde >= lambda_c (paper: 0.5)."}
    )
    lambda_a: float = field(
        default=0.1,
        metadata={
            "help": "ACE threshold: reject a row if its active ACE score > lambda_a (paper: 0.1; the direction "
            "is our reading). In normalized mode the score is a mean log, so pick lambda_a on that scale."
        },
    )
    ace_mode: Literal["paper", "normalized", "paper_exact"] = field(
        default="paper",
        metadata={
            "help": "Which ACE rule selection uses: 'paper' (rap_ace; responses shorter than ace_min_length are "
            "not judged), 'normalized' (rap_ace_norm, same guard) or 'paper_exact' (rap_ace, every response "
            "judged: the paper's rule as written, which rejects short answers for being short)."
        },
    )
    ace_min_length: int = field(
        default=16,
        metadata={
            "help": "ACE does not judge a response of fewer tokens than this (rap_ace_length): such a row is "
            "never ACE-rejected and is counted as 'not judged'. Ignored in 'paper_exact' mode; 0 judges all."
        },
    )
    drm_k: int | None = field(
        default=None, metadata={"help": "DRM: replace at most this many trivial kept rows (absolute cap)."}
    )
    drm_ratio: float | None = field(
        default=None,
        metadata={
            "help": "DRM: replace at most floor(drm_ratio * #kept) trivial rows. Exclusive with drm_k."
        },
    )
    use_drm: bool = field(
        default=True, metadata={"help": "Run the DRM replacement step (ablations turn it off)."}
    )
    target_ratio: float | None = field(
        default=None,
        metadata={"help": "Budget: select exactly round(target_ratio * #non-error rows) rows, in (0, 1]."},
    )
    target_size: int | None = field(
        default=None, metadata={"help": "Budget: select exactly this many rows (capped by #non-error rows)."}
    )

    def _errors(self) -> list[str]:
        errors: list[str] = []
        if self.ace_mode not in ACE_MODES:
            errors.append(f"ace_mode must be one of {ACE_MODES}, got {self.ace_mode!r}")
        if not isinstance(self.ace_min_length, int) or self.ace_min_length < 0:
            errors.append(f"ace_min_length must be an integer >= 0, got {self.ace_min_length!r}")
        if self.drm_k is not None and self.drm_ratio is not None:
            errors.append("set at most one of drm_k and drm_ratio")
        if self.drm_k is not None and self.drm_k < 0:
            errors.append(f"drm_k must be >= 0, got {self.drm_k!r}")
        if self.drm_ratio is not None and not 0 < self.drm_ratio <= 1:
            errors.append(f"drm_ratio must be in (0, 1], got {self.drm_ratio!r}")
        if self.target_ratio is not None and self.target_size is not None:
            errors.append("set at most one of target_ratio and target_size")
        if self.target_ratio is not None and not 0 < self.target_ratio <= 1:
            errors.append(f"target_ratio must be in (0, 1], got {self.target_ratio!r}")
        if self.target_size is not None and self.target_size < 0:
            errors.append(f"target_size must be >= 0, got {self.target_size!r}")
        return errors

    @classmethod
    def of(cls, config: RAPSelectionConfig) -> RAPSelectionConfig:
        """The selection part of `config` (a `RAPConfig` or a `RAPSelectionConfig`), as a
        `RAPSelectionConfig`: what a selection result depends on, hashable through `dataclasses.astuple`."""
        return cls(**{name: getattr(config, name) for name in cls.field_names()})

    @property
    def active_ace_column(self) -> str:
        """The score column the ACE filter reads in the current `ace_mode`."""
        return "rap_ace_norm" if self.ace_mode == "normalized" else "rap_ace"

    @property
    def ace_length_guard(self) -> int:
        """Responses shorter than this many tokens are not judged by ACE (0 in 'paper_exact' mode)."""
        return 0 if self.ace_mode == "paper_exact" else self.ace_min_length


@dataclass
class RAPConfig(RAPSelectionConfig, RAPScoringConfig):
    """Configuration of RAP scoring (`RAPDataFilter.score`) and selection (`select_cognitive_samples`) in one:
    every field of `RAPScoringConfig` and of `RAPSelectionConfig`.

    Scoring fields change the score columns; selection fields only change which rows are selected, so a
    scored dataset can be re-selected with other selection fields without running the model again.
    `scoring()` and `selection()` return the two halves.
    """

    def _errors(self) -> list[str]:
        errors = RAPScoringConfig._errors(self) + RAPSelectionConfig._errors(self)
        if (
            self.text_arm == "decisive"
            and self.decisive_lambda_c is not None
            and self.decisive_lambda_c != self.lambda_c
        ):
            errors.append(
                f"decisive_lambda_c ({self.decisive_lambda_c!r}) differs from lambda_c ({self.lambda_c!r}): "
                "decisive scoring would settle decisions at another threshold than selection uses; leave "
                "decisive_lambda_c unset to use lambda_c"
            )
        return errors

    def scoring(self) -> RAPScoringConfig:
        """The scoring half of this config."""
        return RAPScoringConfig.of(self)

    def selection(self) -> RAPSelectionConfig:
        """The selection half of this config."""
        return RAPSelectionConfig.of(self)
