"""benchmarks/reproduce.py's library side (`reproduction`): arms, summaries, table, and a tiny end-to-end run."""

import json
import math
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

# The experiment lives with its benchmark script, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from reproduction import (  # noqa: E402
    ARM_LABELS,
    ARMS,
    ReproduceConfig,
    arm_data,
    markdown_table,
    run_reproduction,
    summarize,
)

from rap_hf.selection import SELECTED_COLUMN


@pytest.fixture(scope="module")
def scored():
    """A scored pool without a model: 60 rows whose scores make RAP keep some and reject others."""
    rng = np.random.default_rng(0)
    n = 60
    acc_mm = rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], n)
    acc_text = np.minimum(acc_mm, rng.choice([0.0, 0.2, 0.8], n))
    return datasets.Dataset.from_dict(
        {
            "row_id": list(range(n)),
            "solution": [str(i) for i in range(n)],
            "rap_acc_mm": acc_mm.tolist(),
            "rap_acc_text": acc_text.tolist(),
            "rap_cde": (acc_mm - acc_text).tolist(),
            "rap_ace": rng.uniform(0, 1, n).tolist(),
            "rap_ace_norm": rng.uniform(0, 1, n).tolist(),
            "rap_difficulty": (1 - acc_mm).tolist(),
            "rap_error": [None] * n,
        }
    )


def test_arms_have_the_documented_rows(scored):
    full = arm_data("full", scored, seed=0)
    assert (full.rows, full.train_on, full.online) == (60, "all", False)
    rap = arm_data("rap", scored, seed=0)
    assert rap.train_on == "selected" and not rap.online
    assert 0 < rap.rows < 60 and rap.rows == sum(rap.dataset[SELECTED_COLUMN])
    assert rap.stage_counts["kept"] + rap.stage_counts.get("drm_in", 0) == rap.rows
    online = arm_data("rap_online", scored, seed=0)
    assert online.online and online.rows == rap.rows
    # random: same size as RAP's subset, drawn with the run's seed, so seeds differ
    random0, random1 = arm_data("random", scored, seed=0), arm_data("random", scored, seed=1)
    assert random0.rows == rap.rows == len(random0.dataset) and random0.train_on == "as_is"
    assert random0.dataset["row_id"] != random1.dataset["row_id"]
    assert set(random0.dataset["row_id"]) <= set(range(60))
    no_drm = arm_data("rap_no_drm", scored, seed=0)
    assert no_drm.stage_counts.get("drm_in", 0) == 0 and no_drm.stage_counts.get("drm_out", 0) == 0
    with pytest.raises(ValueError, match="unknown arm"):
        arm_data("everything", scored, seed=0)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown arms"):
        ReproduceConfig(arms=["full", "bogus"]).validate()
    with pytest.raises(ValueError, match="seed"):
        ReproduceConfig(seeds=[]).validate()


def _run(arm, seed, visual, seconds, scoring=0.0):
    return {
        "arm": arm,
        "seed": seed,
        "train": {"rows": 10, "steps": 5, "seconds": seconds, "generated_tokens": 100},
        "scoring": {"seconds": scoring, "generated_tokens": 50 if scoring else 0},
        "total_seconds": seconds + scoring,
        "total_generated_tokens": 100 + (50 if scoring else 0),
        "eval": {"visual_image": visual, "visual_text": 0.1, "hard_image": 0.0, "hard_text": 0.0},
    }


def test_summary_and_table():
    runs = [_run("full", s, v, 100.0) for s, v in ((0, 0.5), (1, 0.7))]
    runs += [_run("rap", s, v, 10.0, scoring=5.0) for s, v in ((0, 0.6), (1, 0.6))]
    summary = summarize(runs)
    assert summary["full"]["visual_image"] == pytest.approx((0.6, math.sqrt(0.02)))
    assert summary["rap"]["total_seconds"] == pytest.approx((15.0, 0.0))
    assert "random" not in summary
    results = {
        "config": {"seeds": [0, 1]},
        "machine": "test machine",
        "weak_start": {
            "eval": {"visual_image": 0.3, "visual_text": 0.1, "hard_image": 0.0, "hard_text": 0.0}
        },
        "summary": summary,
    }
    table = markdown_table(results)
    assert ARM_LABELS["full"] in table and ARM_LABELS["rap"] in table and "weak start" in table
    assert "0.600 ± 0.141" in table  # full, visual with image
    assert "| 5 |" in table and "| 50 |" in table  # RAP's scoring seconds and scoring tokens


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_table_plot_and_counts_scoring(tmp_path):
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path

    if not reference_model_available():
        pytest.skip("the shipped reference model is missing")
    config = ReproduceConfig(
        output_dir=str(tmp_path / "results"),
        work_dir=str(tmp_path / "work"),
        start_model=str(reference_model_path()),
        seeds=[0],
        arms=["full", "rap", "random"],
        pool_rows=12,
        eval_rows=12,
        num_rollouts=2,
        epochs=1.0,
        prompts_per_step=2,
        num_generations=2,
    )
    results = run_reproduction(config)
    for name in ("reproduce.md", "reproduce.json", "reproduce.png"):
        assert (tmp_path / "results" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "results" / "reproduce.json").read_text())
    by_arm = {r["arm"]: r for r in saved["runs"]}
    assert by_arm["full"]["train"]["rows"] == 12 and by_arm["full"]["train"]["steps"] == 6
    assert by_arm["full"]["scoring"]["seconds"] == 0.0
    if "rap" in by_arm:  # an empty RAP subset is skipped (and then random is too)
        assert saved["scoring"]["seconds"] > 0
        assert by_arm["rap"]["scoring"]["seconds"] == pytest.approx(saved["scoring"]["seconds"])
        assert by_arm["rap"]["total_seconds"] > by_arm["rap"]["train"]["seconds"]
        assert by_arm["random"]["train"]["rows"] == by_arm["rap"]["train"]["rows"]
    for run in saved["runs"]:
        assert run["train"]["generated_tokens"] > 0
        assert all(0.0 <= run["eval"][k] <= 1.0 for k in ("visual_image", "visual_text", "hard_image"))
    assert results["summary"].keys() == {r["arm"] for r in saved["runs"]}
    assert set(ARMS) >= results["summary"].keys()
