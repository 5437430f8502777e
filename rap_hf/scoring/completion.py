"""Completing a decisive run: ``rap-hf score`` with ``text_arm="full"`` on an output folder that holds a finished
``text_arm="decisive"`` run generates exactly the text-only rollouts decisive scoring skipped, and ends with the
dataset a full run writes (docs/scoring.md#completing-a-decisive-run).

Why it is exact: rollout k of a row is seeded by (seed, row, arm, k) whatever its batch or wave, so the
decisive run's text-only completions are the first ``rap_text_rollouts`` of the full run's, and the multimodal
arm, ACE and the errors are the same in both modes. Completion re-rewards the stored completions (the reward
function is deterministic), generates rollouts ``rap_text_rollouts .. M-1`` of each partial row, and computes
the reward columns from all M; ACE columns and errors are carried over unchanged.

How it resumes: the decisive run's score columns are first moved to ``OUTPUT/rap_completing_from/`` (with the
fingerprint inputs they were computed from), and the decisive run's own files are removed. The completion is
then an ordinary checkpointed run (`rap_hf.scoring.distributed.score_to_disk`) over the input dataset with
those columns alongside, under a prefix (`PRIOR_PREFIX`), so a completion that dies resumes like any run;
the folder is removed once the completed dataset is saved.

Needs the completions (``keep_completions=True``, the default); not under ZeRO-3 lock-step scoring.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from rap_hf.columns import SCORE_COLUMNS
from rap_hf.scoring.checkpointing import (
    CHECKPOINT_DIR,
    COMPLETION_DIR,
    SCORING_METADATA,
    CheckpointMismatchError,
    describe_difference,
    remove_final_dataset,
)

logger = logging.getLogger("rap_hf")

# The decisive run's score columns, as the engine sees them in a batch (a prefix, so they are not taken for
# score columns of the input): rap_prior__rap_completions_mm, ...
PRIOR_PREFIX = "rap_prior__"
PRIOR_COLUMNS = (
    "rap_completions_mm",
    "rap_completions_text",
    "rap_text_rollouts",
    "rap_ace",
    "rap_ace_norm",
    "rap_ace_length",
    "rap_error",
)
SOURCE_FILE = "source.json"
# Scoring settings that may differ between the decisive run and its completion (everything else must match).
_MODE_FIELDS = ("text_arm", "decisive_lambda_c", "decisive_waves")


def _without_mode(inputs: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in (inputs.get("rap_config") or {}).items() if k not in _MODE_FIELDS}
    return {**inputs, "rap_config": config}


def completes(decisive_inputs: dict[str, Any], inputs: dict[str, Any]) -> bool:
    """Whether a run with fingerprint `inputs` completes a decisive run with fingerprint `decisive_inputs`:
    the former is a full run, the latter decisive, and they agree on everything else."""
    old, new = decisive_inputs.get("rap_config") or {}, inputs.get("rap_config") or {}
    return (
        old.get("text_arm") == "decisive"
        and new.get("text_arm", "full") == "full"
        and _without_mode(decisive_inputs) == _without_mode(inputs)
    )


def prepare_completion(output_dir: str | os.PathLike, inputs: dict[str, Any], overwrite: bool) -> str | None:
    """Main process, before the checkpoint checks: the folder of decisive scores this run completes, or None.

    Moves a finished decisive run that this (full) run completes into ``rap_completing_from/`` first, or finds
    one moved there by a completion that died. With `overwrite`, any such folder is discarded.
    """
    output = Path(output_dir)
    stash = output / COMPLETION_DIR
    if overwrite:
        shutil.rmtree(stash, ignore_errors=True)
        return None
    if stash.is_dir():
        source = json.loads((stash / SOURCE_FILE).read_text())
        if not completes(source, inputs):
            raise CheckpointMismatchError(
                f"{output} holds an interrupted completion of a decisive scoring run that this run does not "
                f"complete (differs in: {describe_difference(_without_mode(source), _without_mode(inputs))}). "
                "Re-run with the decisive run's settings and text_arm='full' to finish it, or pass --overwrite "
                "to discard it."
            )
        logger.info("RAP scoring: resuming the completion of a decisive run in %s", output)
        return str(stash)
    metadata_path = output / SCORING_METADATA
    if not metadata_path.is_file():
        return None
    metadata = json.loads(metadata_path.read_text())
    source = metadata.get("fingerprint_inputs") or {}
    if not completes(source, inputs):
        return None  # the checkpoint checks say what is wrong with the folder, if anything
    if not source["rap_config"].get("keep_completions", True):
        raise CheckpointMismatchError(
            f"{output} holds a decisive scoring run without its completions (keep_completions=False): its "
            "text-only rollouts cannot be completed exactly. Pass --overwrite to score it again in full."
        )
    _stash(output, source)
    logger.info(
        "RAP scoring: completing the decisive run in %s (text_arm='full' generates only the skipped text-only "
        "rollouts)",
        output,
    )
    return str(stash)


def _stash(output: Path, source: dict[str, Any]) -> None:
    """Move the finished decisive run's score columns to ``rap_completing_from/`` and remove its files.

    The folder appears complete or not at all (written under a temporary name, then renamed), and the decisive
    run's files are removed only after it exists, so a crash at any point leaves the decisive scores somewhere.
    """
    import datasets

    scored = datasets.load_from_disk(str(output))
    columns = [c for c in PRIOR_COLUMNS if c in scored.column_names]
    missing = set(PRIOR_COLUMNS) - set(columns)
    if missing:
        raise CheckpointMismatchError(
            f"{output} holds a decisive run without the columns {sorted(missing)}; pass --overwrite to rescore"
        )
    prior = scored.select_columns(columns)
    prior = prior.rename_columns({c: PRIOR_PREFIX + c for c in columns})
    tmp = output / f".{COMPLETION_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    prior.save_to_disk(str(tmp))
    (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2, default=str))
    del prior, scored
    os.replace(tmp, output / COMPLETION_DIR)
    (output / SCORING_METADATA).unlink(missing_ok=True)
    remove_final_dataset(output)
    shutil.rmtree(output / CHECKPOINT_DIR, ignore_errors=True)  # a kept checkpoint of the decisive run


def load_prior(stash: str | os.PathLike) -> Any:
    """The decisive run's score columns (prefixed) as a `datasets.Dataset`, row-aligned with the input."""
    import datasets

    return datasets.load_from_disk(str(stash))


def completion_summary(prior: Any, num_rollouts: int) -> dict[str, Any]:
    """What the completion had to do, for ``rap_scoring.json``: the decisive source and the rollouts added."""
    counts = prior[PRIOR_PREFIX + "rap_text_rollouts"]
    errors = prior[PRIOR_PREFIX + "rap_error"]
    partial = [n for n, e in zip(counts, errors, strict=True) if e is None and n < num_rollouts]
    return {
        "completed_from": "text_arm=decisive",
        "rows_completed": len(partial),
        "text_rollouts_added": int(sum(num_rollouts - n for n in partial)),
    }


def prior_row(batch: dict[str, list], i: int) -> dict[str, Any] | None:
    """Row `i`'s decisive scores from a batch of a completion run; None in any other run."""
    if PRIOR_PREFIX + "rap_text_rollouts" not in batch:
        return None
    return {name: batch[PRIOR_PREFIX + name][i] for name in PRIOR_COLUMNS}


def is_prior_column(name: str) -> bool:
    """Columns a completion run adds to the input: not the user's, so not passed to the reward function."""
    return name.startswith(PRIOR_PREFIX) or name in SCORE_COLUMNS
