"""The data the explorer opens on: the shipped precomputed scores, how they are built, and the fallback.

`build_explorer_assets` scores visual-arith's test split with the reference model once and ships the result
as parquet under `rap_hf/explorer/assets/`, so the Space opens without running a model;
`default_explorer_data` opens it (or scores a small, clearly labelled fallback when it is not shipped).
`explorer_scoring_config` holds the scoring settings of the shipped scores, which the app's model also uses
for new samples so that both are comparable.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from rap_hf.config import RAPScoringConfig
from rap_hf.explorer.data import ExplorerData, read_parquet_dataset
from rap_hf.explorer.export import embed_external_files

ASSET_FILENAME = "visual_arith_test_scored.parquet"
ASSET_METADATA = "visual_arith_test_scored.json"
ASSET_ROWS = 200
# Scoring settings of the shipped scores and of "score a new sample" (the demo's: 5 rollouts per arm).
EXPLORER_SCORING = {"num_rollouts": 5, "max_new_tokens": 48, "batch_size": 24, "seed": 0}


def explorer_assets_dir() -> Path:
    """Folder of the explorer's shipped assets (inside the installed package)."""
    return Path(str(resources.files("rap_hf.explorer") / "assets"))


def explorer_asset_path() -> Path:
    """The shipped scored dataset the app opens on (exists once `build_explorer_assets` has been run)."""
    return explorer_assets_dir() / ASSET_FILENAME


def explorer_scoring_config(**overrides: Any) -> RAPScoringConfig:
    """The `RAPScoringConfig` the shipped scores were (and new samples are) scored with."""
    return RAPScoringConfig(**{**EXPLORER_SCORING, **overrides})


def build_explorer_assets(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    num_rows: int = ASSET_ROWS,
    model: str | os.PathLike[str] | None = None,
    config: RAPScoringConfig | None = None,
    seed: int = 0,
) -> Path:
    """Score visual-arith's test split with the reference model and save it as the explorer's opening data.

    Writes ``<out_dir>/visual_arith_test_scored.parquet`` (images embedded, every score column, the
    rollouts; `kind`/`digits` kept as ground truth for visitors, `reference_completion` dropped) and
    ``visual_arith_test_scored.json`` (model, config, rows, seconds). Run it once after the reference model
    is trained; the app reads the parquet and never runs a model to open.

    Args:
        out_dir: target folder; default `explorer_assets_dir()` (inside the package, so it ships).
        num_rows: rows of the test split to score (the split has 400).
        model: scoring model; default the shipped reference model (`rap_hf.demo.reference_model`).
        config: scoring settings (a `RAPConfig` works too); default `explorer_scoring_config()`. Recorded
            as given in the metadata's ``rap_config``.
        seed: seed of the visual-arith split.

    Returns:
        The parquet path.

    Raises:
        FileNotFoundError: no ``model`` given and the reference model is not shipped yet.
    """
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path
    from rap_hf.demo.visual_arith import visual_arith
    from rap_hf.scoring.filter import RAPDataFilter

    if model is None:
        if not reference_model_available():
            raise FileNotFoundError(
                f"the reference model is not in {reference_model_path()}; train it first "
                "(trainers/train_reference_model.py) or pass model="
            )
        model = reference_model_path()
    config = config or explorer_scoring_config()
    out = Path(out_dir) if out_dir is not None else explorer_assets_dir()
    out.mkdir(parents=True, exist_ok=True)
    dataset = visual_arith("test", num_rows, seed=seed).remove_columns(["reference_completion"])
    start = time.perf_counter()
    scored = RAPDataFilter(str(model), config=config).score(dataset, desc="explorer assets")
    seconds = time.perf_counter() - start
    path = out / ASSET_FILENAME
    embed_external_files(scored).to_parquet(str(path))
    metadata = {
        "model": Path(model).name if Path(str(model)).exists() else str(model),
        "dataset": "builtin:visual-arith",
        "split": "test",
        "rows": len(scored),
        "seed": seed,
        "scoring_seconds": round(seconds, 1),
        "rap_config": config.to_dict(),
    }
    (out / ASSET_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def default_explorer_data(
    *,
    asset: str | os.PathLike[str] | None = None,
    fallback_model: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> ExplorerData:
    """The data the app opens on: the shipped precomputed scores, else a small, clearly labelled fallback.

    Fallback (the assets are built once the reference model exists): score 16 visual-arith test rows with the
    reference model when it is installed; otherwise 8 `tiny-synthetic` rows with a random tiny model built
    offline (checks the pipeline; such a model answers nothing, so every row is `cde_rejected`).

    Args:
        asset: parquet to open; default `explorer_asset_path()`.
        fallback_model: model folder for the fallback scoring (default: reference model, else a tiny one).
        work_dir: where a tiny fallback model is saved (default: a new temp folder).
    """
    path = Path(asset) if asset is not None else explorer_asset_path()
    if path.exists():
        notes = []
        metadata = path.with_suffix(".json")
        if metadata.exists():  # written next to the parquet by build_explorer_assets
            meta = json.loads(metadata.read_text())
            config = meta.get("rap_config", {})
            notes.append(
                f"Scored by {meta.get('model')} with {config.get('num_rollouts')} rollouts per arm "
                f"(max {config.get('max_new_tokens')} new tokens, seed {config.get('seed')}) in "
                f"{meta.get('scoring_seconds')} s."
            )
        return ExplorerData.from_dataset(
            read_parquet_dataset(path), "visual-arith test (shipped scores)", notes
        )
    from rap_hf.demo.data import tiny_synthetic
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path
    from rap_hf.demo.visual_arith import visual_arith
    from rap_hf.scoring.filter import RAPDataFilter

    missing = f"The precomputed scores ({path.name}) are not shipped in this install"
    if fallback_model is None and reference_model_available():
        model, dataset = (
            str(reference_model_path()),
            visual_arith("test", 16).remove_columns(["reference_completion"]),
        )
        scoring = explorer_scoring_config()
        note = f"{missing}: showing 16 visual-arith rows scored live with the reference model."
        label = "visual-arith test (reference model, scored at start-up)"
    else:
        if fallback_model is None:
            from rap_hf.demo.tiny_models import save_tiny_vlm

            folder = (
                Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="rap-explorer-"))
            )
            fallback_model = save_tiny_vlm(folder / "tiny-model", seed=0)
        model, dataset = str(fallback_model), tiny_synthetic(8)
        scoring = RAPScoringConfig(num_rollouts=2, max_new_tokens=12, batch_size=8)
        note = (
            f"{missing}, and the reference model is not installed: showing 8 tiny-synthetic rows scored by a "
            "RANDOM tiny model (a pipeline check, not meaningful scores: every row lands in cde_rejected). "
            "Load a scored dataset above, or build the assets with rap_hf.explorer.build_explorer_assets()."
        )
        label = "tiny-synthetic (random tiny model: placeholder)"
    scored = RAPDataFilter(model, config=scoring).score(dataset, desc="explorer fallback")
    return ExplorerData.from_dataset(scored, label, notes=[note])
