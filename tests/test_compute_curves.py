"""benchmarks/compute_curves.py's library side (`curves`): compute bookkeeping, resumption, read-outs and the
subset builders, without training a model."""

import json
import math
import sys
import time
from pathlib import Path

import datasets
import pytest

# The experiment lives with its benchmark script, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import curves  # noqa: E402
from curves import (  # noqa: E402
    ARM_SPECS,
    METRICS,
    CurvesConfig,
    area_under_curve,
    compute_to_reach,
    cumulative_tokens,
    data_digest,
    interpolate,
    learnable_rows,
    oracle_rows,
    pass_rate_rows,
    passrate_no_text_rows,
    readouts,
    run_key,
    scoring_charge,
    total_curve,
)

from rap_hf.selection import SELECTED_COLUMN

# ----------------------------------------------------------------------------------------------- fixtures


def scored_pool() -> datasets.Dataset:
    """A scored pool without a model: 16 rows, every kind, pass rates from 0 to 1, one scoring error."""
    acc_mm = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.8, 0.6, 0.4, 1.0, 0.8, 0.6, 1.0, 0.2, 0.6]
    acc_text = [0.0, 0.0, 0.0, 0.0, 0.2, 0.0, 1.0, 0.8, 0.0, 0.4, 0.4, 0.0, 0.6, 0.2, 0.2, 0.0]
    kinds = ["visual", "text_leak", "hard", "distractor"] * 4
    error = [None] * 16
    error[4] = "generation failed: boom"
    return datasets.Dataset.from_dict(
        {
            "row_id": list(range(16)),
            "kind": kinds,
            "solution": [str(i) for i in range(16)],
            "rap_acc_mm": acc_mm,
            "rap_acc_text": acc_text,
            "rap_cde": [m - t for m, t in zip(acc_mm, acc_text, strict=True)],
            "rap_ace": [0.01] * 16,
            "rap_ace_norm": [0.01] * 16,
            "rap_difficulty": [1 - m for m in acc_mm],
            "rap_error": error,
        }
    )


COSTS = {
    "cheap": {
        "seconds": 100.0,
        "generated_tokens": 1000,
        "generated_tokens_by_arm": {"mm": 600, "text": 400},
        "seconds_generation_by_arm": {"mm": 50.0, "text": 30.0},
        "seconds_rewards": 4.0,
        "mm_rollouts": 100,
        "text_rollouts": 60,
    },
    "exact": {
        "seconds": 150.0,
        "generated_tokens": 1500,
        "generated_tokens_by_arm": {"mm": 600, "text": 900},
        "seconds_generation_by_arm": {"mm": 50.0, "text": 80.0},
        "seconds_rewards": 5.0,
        "mm_rollouts": 100,
        "text_rollouts": 100,
    },
}


def _point(step, tokens, seconds, visual, hard=0.1):
    return {
        "step": step,
        "generated_tokens": tokens,
        "seconds": seconds,
        "acc_visual_image": visual,
        "acc_hard_image": hard,
        "acc_visual_text": 0.05,
        "acc_hard_text": 0.0,
    }


# ----------------------------------------------------------------------------------------------- charging


def test_scored_arms_are_charged_their_pool_and_pass_rate_only_the_multimodal_share():
    zero = {"generated_tokens": 0, "seconds": 0.0}
    for arm in ("full", "random", "oracle"):
        assert scoring_charge(arm, COSTS) == zero
    for arm in ("rap", "rap_online", "cde_passrate"):  # the cheap (decisive) scoring run
        assert scoring_charge(arm, COSTS) == {"generated_tokens": 1000, "seconds": 100.0}
    for arm in ("rap_budget", "rap_learnable", "passrate_no_text"):  # exact scores: the text_arm="full" run
        assert scoring_charge(arm, COSTS) == {"generated_tokens": 1500, "seconds": 150.0}
    # mm tokens; mm generation seconds + rewards x 100 mm / (100 mm + 60 text) rollouts
    assert scoring_charge("pass_rate", COSTS) == {"generated_tokens": 600, "seconds": pytest.approx(52.5)}


def test_curves_start_at_the_scoring_charge():
    points = [_point(10, 300, 3.0, 0.4), _point(0, 0, 0.0, 0.3)]
    for arm, start in (("full", 0), ("rap", 1000), ("pass_rate", 600), ("rap_budget", 1500)):
        xs, ys = total_curve(points, scoring_charge(arm, COSTS), "acc_visual_image")
        assert xs == [start, start + 300] and ys == [0.3, 0.4]  # sorted by step
    xs, _ = total_curve(points, scoring_charge("pass_rate", COSTS), "acc_visual_image", "seconds")
    assert xs == [pytest.approx(52.5), pytest.approx(55.5)]


# ----------------------------------------------------------------------------------------------- curve maths


def test_interpolate():
    xs, ys = [10.0, 20.0, 40.0], [0.2, 0.4, 0.0]
    assert interpolate(xs, ys, 15.0) == pytest.approx(0.3)
    assert interpolate(xs, ys, 30.0) == pytest.approx(0.2)
    assert interpolate(xs, ys, 10.0) == 0.2 and interpolate(xs, ys, 40.0) == 0.0
    assert interpolate(xs, ys, 9.9) is None and interpolate(xs, ys, 40.1) is None


def test_compute_to_reach_interpolates_the_first_crossing():
    xs, ys = [0.0, 10.0, 20.0, 30.0, 40.0], [0.2, 0.3, 0.5, 0.35, 0.6]
    # 0.4 is crossed first between (10, 0.3) and (20, 0.5): halfway
    assert compute_to_reach(xs, ys, 0.4) == pytest.approx(15.0)
    assert compute_to_reach(xs, ys, 0.5) == pytest.approx(20.0)  # reached exactly at a point
    assert compute_to_reach(xs, ys, 0.55) == pytest.approx(30.0 + 0.2 / 0.25 * 10.0)  # after the dip
    assert compute_to_reach(xs, ys, 0.61) is None  # never reached
    # a curve already above the target at its first point (e.g. after its scoring cost): its start
    assert compute_to_reach([7.0, 9.0], [0.8, 0.9], 0.4) == 7.0


def test_area_under_curve():
    # from 0: trapezoids (0.2+0.4)/2*10 + 0.4*10 = 7 over a window of 20
    assert area_under_curve([0.0, 10.0, 20.0], [0.2, 0.4, 0.4], 20.0) == pytest.approx(0.35)
    # starting at 10 (scoring cost): held at 0.2 on [0, 10], then (0.2+0.6)/2*10 -> (2 + 4) / 20
    assert area_under_curve([10.0, 20.0], [0.2, 0.6], 20.0) == pytest.approx(0.3)
    # cut at the window's end (interpolated at 15: 0.4) and held at the last value past the curve's end
    assert area_under_curve([0.0, 20.0], [0.2, 0.6], 15.0) == pytest.approx((0.2 + 0.5) / 2)
    assert area_under_curve([0.0, 10.0], [0.2, 0.4], 20.0) == pytest.approx((3 + 4) / 20)
    # a scoring cost beyond the window: the weak start throughout
    assert area_under_curve([30.0, 40.0], [0.25, 0.9], 20.0) == pytest.approx(0.25)


def test_cumulative_tokens_counts_each_step_once():
    logs = [
        {"step": 1, "completions/mean_length": 10.0},
        {"step": 2, "completions/mean_length": 20.5},
        {"step": 2, "train_runtime": 1.0},  # the end-of-training summary, no generation
        {"step": 3, "completions/mean_length": 5.0},
    ]
    assert cumulative_tokens(logs, batch=4) == {1: 40, 2: 122, 3: 142}


def test_readouts_against_full():
    full = {"seeds": {"0": [_point(0, 0, 0, 0.2), _point(5, 50, 5, 0.3), _point(10, 100, 10, 0.4)]}}
    for seed in ("1",):
        full["seeds"][seed] = [_point(0, 0, 0, 0.2), _point(5, 50, 5, 0.3), _point(10, 100, 10, 0.6)]
    # full's final = mean(0.4, 0.6) = 0.5; one epoch = 5 steps -> E = 50 tokens; end F = 100
    rap = {
        "seeds": {
            "0": [_point(0, 0, 0, 0.2), _point(5, 40, 4, 0.6), _point(10, 80, 8, 0.7)],
            "1": [_point(0, 0, 0, 0.2), _point(5, 40, 4, 0.3), _point(10, 80, 8, 0.4)],
        }
    }
    charges = {
        "full": {"generated_tokens": 0, "seconds": 0.0},
        "rap": {"generated_tokens": 20, "seconds": 1.0},
    }
    out = readouts({"full": full, "rap": rap}, charges, epoch_steps=5)
    ref = out["full_reference"]
    assert ref["generated_tokens"] == {"epoch": 50.0, "end": 100.0}
    assert ref["final"]["acc_visual_image"] == pytest.approx(0.5)
    r = out["arms"]["rap"]["acc_visual_image"]
    # at 0.25 E = 12.5 tokens RAP is still scoring (starts at 20): not reached
    assert r["acc_at"]["0.25"]["mean"] is None and r["acc_at"]["0.25"]["n"] == 0
    # at E = 50: seed 0 at total 50 -> (50-20)/40 of the way 0.2 -> 0.6 = 0.5; seed 1: 0.2 + 0.75*0.1 = 0.275
    assert r["acc_at"]["1.0"]["mean"] == pytest.approx((0.5 + 0.275) / 2)
    # seed 0 reaches 0.5 at total 50 -> 0.5 F; seed 1 never does
    assert r["to_reach"]["mean"] == pytest.approx(0.5) and (r["to_reach"]["n"], r["to_reach"]["of"]) == (1, 2)
    assert r["final"]["mean"] == pytest.approx(0.55)
    f = out["arms"]["full"]["acc_visual_image"]
    assert (f["to_reach"]["n"], f["to_reach"]["mean"]) == (1, pytest.approx((50 + 50 * 0.2 / 0.3) / 100))


# ----------------------------------------------------------------------------------------------- subsets


def test_oracle_drops_exactly_the_text_leak_rows():
    pool = scored_pool()
    rows = oracle_rows(pool)
    assert rows == [i for i, kind in enumerate(pool["kind"]) if kind != "text_leak"] and len(rows) == 12
    data = ARM_SPECS["oracle"].build({"cheap": pool}, 0, CurvesConfig())
    assert "text_leak" not in data.dataset["kind"] and data.rows == 12 and data.train_on == "as_is"


def test_pass_rate_keeps_exactly_0_lt_acc_mm_lt_1():
    pool = scored_pool()
    rows = pass_rate_rows(pool)
    # row 4 has acc_mm 0.8 but a scoring error
    expected = [i for i, a in enumerate(pool["rap_acc_mm"]) if 0 < a < 1 and i != 4]
    assert rows == expected == [1, 2, 3, 7, 8, 9, 11, 12, 14, 15]
    data = ARM_SPECS["pass_rate"].build({"cheap": pool}, 0, CurvesConfig())
    assert all(0 < a < 1 for a in data.dataset["rap_acc_mm"]) and data.rows == len(expected)


def test_rap_random_online_and_variants_have_the_documented_rows():
    pool = scored_pool()
    pools = {"cheap": pool, "exact": pool}
    config = CurvesConfig()
    rap = ARM_SPECS["rap"].build(pools, 0, config)
    assert rap.train_on == "selected" and 0 < rap.rows == sum(rap.dataset[SELECTED_COLUMN]) < 16
    assert ARM_SPECS["rap_online"].build(pools, 0, config).online
    random0, random1 = (ARM_SPECS["random"].build(pools, s, config) for s in (0, 1))
    assert (
        random0.rows == rap.rows == len(random0.dataset)
        and random0.dataset["row_id"] != random1.dataset["row_id"]
    )
    budget = ARM_SPECS["rap_budget"].build(pools, 0, config)
    assert budget.rows == round(0.25 * 15)  # 15 rows scored without error
    learnable = ARM_SPECS["rap_learnable"].build(pools, 0, config)
    assert learnable.rows == rap.rows
    cde_pr = ARM_SPECS["cde_passrate"].build(pools, 0, config)
    assert all(0 < a < 1 for a in cde_pr.dataset["rap_acc_mm"])
    assert all(c >= 0.5 for c in cde_pr.dataset["rap_cde"])
    assert cde_pr.dataset["row_id"] == [3, 8, 11, 15]


def test_learnable_ranks_by_cde_times_pass_rate_spread():
    pool = scored_pool()
    # cde * acc * (1 - acc): rows 3, 8 and 15 (0.6 * 0.6 * 0.4 = 0.144, equal cde: by index), then row 11
    # (0.8 * 0.8 * 0.2 = 0.128), then row 2 (0.4 * 0.4 * 0.6); row 5 has the highest cde (1.0) but acc_mm = 1
    assert learnable_rows(pool, 2) == [3, 8]
    assert learnable_rows(pool, 3) == [3, 8, 15]
    assert learnable_rows(pool, 5) == [2, 3, 8, 11, 15]
    bounded = pool.add_column("rap_cde_bound", [1.0] + [0.0] * 15)
    with pytest.raises(ValueError, match="exact"):
        learnable_rows(bounded, 3)


def test_passrate_no_text_drops_the_band_rows_the_text_arm_solves():
    pool = scored_pool()
    # the pass-rate band [1, 2, 3, 7, 8, 9, 11, 12, 14, 15] minus rows 7 (acc_text 0.8) and 12 (0.6)
    assert passrate_no_text_rows(pool) == [1, 2, 3, 8, 9, 11, 14, 15]
    assert passrate_no_text_rows(pool, text_max=0.3) == [1, 2, 3, 8, 11, 14, 15]  # and row 9 (0.4)
    data = ARM_SPECS["passrate_no_text"].build({"cheap": pool, "exact": pool}, 0, CurvesConfig())
    assert data.dataset["row_id"] == [1, 2, 3, 8, 9, 11, 14, 15] and data.train_on == "as_is"
    # decisive scores skip the text arm of low-acc_mm rows, exactly the ones this filter must read
    bounded = pool.add_column("rap_cde_bound", [0.0] * 15 + [-1.0])
    with pytest.raises(ValueError, match="exact rap_acc_text"):
        passrate_no_text_rows(bounded)


# ----------------------------------------------------------------------------------------------- config


def test_config_keys_paths_and_validation(tmp_path):
    config = CurvesConfig(work_dir=str(tmp_path))
    assert config.steps() == 200 and config.epoch_steps() == 100  # 2 passes of 400 rows, 4 prompts a step
    assert config.eval_steps() == list(range(20, 201, 20))
    assert CurvesConfig(budget_steps=25, eval_every=10).eval_steps() == [10, 20, 25]
    assert run_key(config, "rap", 0, "test") != run_key(config, "rap", 0, "validation")
    assert run_key(config, "rap", 0, "test") != run_key(config, "rap", 1, "test")
    assert curves.curve_path(config, "rap", 0, "test") != curves.curve_path(config, "rap", 0, "validation")
    # settings an arm does not depend on leave its key alone
    ratio = CurvesConfig(work_dir=str(tmp_path), budget_ratio=0.5)
    assert run_key(config, "rap_budget", 0, "test") != run_key(ratio, "rap_budget", 0, "test")
    assert all(
        run_key(config, arm, 0, "test") == run_key(ratio, arm, 0, "test")
        for arm in ARM_SPECS
        if arm != "rap_budget"
    )
    mode = CurvesConfig(work_dir=str(tmp_path), text_arm="full")
    for arm in ("full", "oracle"):
        assert run_key(config, arm, 0, "test") == run_key(mode, arm, 0, "test")
    for arm in ("rap", "random", "pass_rate", "rap_online", "rap_budget"):
        assert run_key(config, arm, 0, "test") != run_key(mode, arm, 0, "test")
    with pytest.raises(ValueError, match="validation_seed"):
        CurvesConfig(split="validation", validation_seed=1).validate()
    with pytest.raises(ValueError, match="unknown arms"):
        CurvesConfig(arms=["full", "bogus"]).validate()


def test_quick_keeps_the_flags_set_by_hand():
    config = CurvesConfig(quick=True, pool_rows=60)
    config.apply_quick()
    assert config.pool_rows == 60 and config.seeds == [0] and config.arms == curves.QUICK_ARMS
    assert config.start_model is not None and config.work_dir.endswith("_quick")


# ----------------------------------------------------------------------------------------------- resumption


@pytest.fixture
def fake_stages(monkeypatch, tmp_path):
    """Replace the model stages of `run_curves` by fakes; returns the list of trained runs ("arm_seedN")."""
    calls = []
    pool = scored_pool()

    def fake_score_pool(config, model, text_arm):
        return pool, COSTS["cheap" if text_arm == config.text_arm else "exact"]

    def fake_train_curve(config, model, data, seed, evaluation, scratch):
        calls.append(scratch.name)  # run_curves names the scratch folder after the run
        points = [
            _point(step, 30 * step, 0.5 * step, 0.2 + 0.01 * step * (1 + (data.rows % 3)))
            for step in config.eval_steps()
        ]
        log = [{"step": s, "frac_reward_zero_std": 0.5} for s in range(1, config.steps() + 1)]
        return {"points": points, "train_log": log, "train_seconds": 1.0, "eval_seconds": 0.1}

    monkeypatch.setattr(curves, "weak_model", lambda config: (tmp_path / "model", {}))
    monkeypatch.setattr(curves, "score_pool", fake_score_pool)
    monkeypatch.setattr(curves, "evaluation_set", lambda config: None)
    monkeypatch.setattr(curves, "baseline_point", lambda config, model, evaluation: _point(0, 0, 0.0, 0.2))
    monkeypatch.setattr(curves, "train_curve", fake_train_curve)
    return calls


def test_resumption_skips_finished_runs_and_reruns_changed_settings(fake_stages, tmp_path):
    def config(**overrides):
        values = {
            "work_dir": str(tmp_path / "work"),
            "output_dir": str(tmp_path / "out"),
            "arms": ["full", "rap", "pass_rate", "rap_budget"],
            "seeds": [0, 1],
            "pool_rows": 16,
            "budget_steps": 8,
            "eval_every": 4,
        }
        values.update(overrides)
        return CurvesConfig(**values)

    results = curves.run_curves(config())
    assert sorted(fake_stages) == sorted(
        f"{a}_seed{s}" for a in ("full", "rap", "pass_rate", "rap_budget") for s in (0, 1)
    )
    for arm in ("full", "rap", "pass_rate", "rap_budget"):
        for seed in (0, 1):
            assert (tmp_path / "work" / "curves" / arm / f"seed{seed}.json").exists()
    fake_stages.clear()
    again = curves.run_curves(config())
    assert fake_stages == []  # everything was stored
    assert again["arms"] == results["arms"]
    # a setting rap_budget alone depends on: only its two seeds re-train
    curves.run_curves(config(budget_ratio=0.5))
    assert sorted(fake_stages) == ["rap_budget_seed0", "rap_budget_seed1"]
    fake_stages.clear()
    # a common training setting: everything re-trains
    curves.run_curves(config(budget_ratio=0.5, learning_rate=1e-4))
    assert len(fake_stages) == 8
    fake_stages.clear()
    # the validation split is stored apart and does not disturb the test curves
    validation = curves.run_curves(
        config(budget_ratio=0.5, learning_rate=1e-4, split="validation", arms=["full"])
    )
    assert sorted(fake_stages) == ["full_seed0", "full_seed1"]
    assert set(validation["validation"]) == {"full"} and set(validation["arms"]) == {
        "full",
        "rap",
        "pass_rate",
        "rap_budget",
    }
    # a tmp file left by an interrupted write is never read as a curve
    leftover = tmp_path / "work" / "curves" / "full" / ".seed0.json.123.tmp"
    leftover.write_text("{")
    fake_stages.clear()
    curves.run_curves(config(budget_ratio=0.5, learning_rate=1e-4))
    assert fake_stages == []


def test_data_digest_follows_what_each_arm_reads():
    pool = scored_pool()
    config = CurvesConfig(pool_rows=16)

    def digests(scored):
        pools = {"cheap": scored, "exact": scored}
        return {arm: data_digest(ARM_SPECS[arm].build(pools, 0, config)) for arm in ARM_SPECS}

    before = digests(pool)
    assert before == digests(scored_pool())  # a digest of the content, not of the object
    # Row 14 (acc_mm 0.2: CDE-rejected whatever its CDE) is late in the pool, past what a repr would show.
    cde = list(pool["rap_cde"])
    cde[14] = 0.1
    changed = digests(pool.remove_columns("rap_cde").add_column("rap_cde", cde))
    # Offline arms read only which rows are selected: unchanged. Online RAP orders its reserve by CDE: changed.
    for arm in ("full", "rap", "rap_budget", "pass_rate", "oracle", "random"):
        assert changed[arm] == before[arm], arm
    assert changed["rap_online"] != before["rap_online"]
    solution = list(pool["solution"])
    solution[15] = "99"
    changed = digests(pool.remove_columns("solution").add_column("solution", solution))
    assert changed["full"] != before["full"] and changed["oracle"] != before["oracle"]


def test_a_stored_curve_is_reused_only_for_the_data_it_trained_on(fake_stages, monkeypatch, tmp_path):
    config = CurvesConfig(
        work_dir=str(tmp_path / "work"),
        output_dir=str(tmp_path / "out"),
        arms=["full", "rap", "rap_online"],
        seeds=[0],
        pool_rows=16,
        budget_steps=8,
        eval_every=4,
    )
    curves.run_curves(config)
    assert sorted(fake_stages) == ["full_seed0", "rap_online_seed0", "rap_seed0"]
    # Rescored with settings outside the key (decisive_waves, prefill): one CDE value moves; only the arm that
    # reads it re-trains.
    pool = scored_pool()
    cde = list(pool["rap_cde"])
    cde[14] = 0.1
    rescored = pool.remove_columns("rap_cde").add_column("rap_cde", cde)
    monkeypatch.setattr(curves, "score_pool", lambda config, model, text_arm: (rescored, COSTS["cheap"]))
    fake_stages.clear()
    curves.run_curves(config)
    assert fake_stages == ["rap_online_seed0"]
    # A curve stored without a digest (or with another) is never reused: it re-trains.
    path = tmp_path / "work" / "curves" / "full" / "seed0.json"
    stored = json.loads(path.read_text())
    del stored["data_digest"]
    path.write_text(json.dumps(stored))
    fake_stages.clear()
    results = curves.run_curves(config)
    assert fake_stages == ["full_seed0"]
    assert set(results["arms"]) == {"full", "rap", "rap_online"}


def test_run_writes_the_documented_json_table_and_plot(fake_stages, tmp_path):
    config = CurvesConfig(
        work_dir=str(tmp_path / "work"),
        output_dir=str(tmp_path / "out"),
        arms=["full", "rap", "pass_rate", "oracle"],
        seeds=[0, 1],
        pool_rows=16,
        budget_steps=8,
        eval_every=4,
    )
    curves.run_curves(config)
    saved = json.loads((tmp_path / "out" / "compute_curves.json").read_text())
    assert set(saved["arms"]) == {"full", "rap", "pass_rate", "oracle"}
    for runs in saved["arms"].values():
        assert set(runs["seeds"]) == {"0", "1"}
        for points in runs["seeds"].values():
            assert [p["step"] for p in points] == [0, 4, 8]
            assert all({"step", "generated_tokens", "seconds", *METRICS} <= set(p) for p in points)
            assert points[0]["generated_tokens"] == 0  # training compute only: scoring is kept apart
    assert saved["scoring"]["full"] == saved["scoring"]["oracle"] == {"generated_tokens": 0, "seconds": 0.0}
    assert saved["scoring"]["rap"] == {"generated_tokens": 1000, "seconds": 100.0}
    assert saved["scoring"]["pass_rate"]["generated_tokens"] == 600
    assert saved["subsets"]["oracle"]["0"]["kinds"] == {"distractor": 4, "hard": 4, "visual": 4}
    read = saved["readouts"]["arms"]
    assert read["rap"]["acc_visual_image"]["start"]["generated_tokens"] == 1000
    assert read["full"]["acc_visual_image"]["start"]["generated_tokens"] == 0
    table = (tmp_path / "out" / "compute_curves.md").read_text()
    assert "| rap |" in table and "| pass_rate |" in table and "acc_hard_image" in table
    assert (tmp_path / "out" / "compute_curves.png").stat().st_size > 0


# ----------------------------------------------------------------------------------------------- callback


class _FakeModel:
    training = True

    def __init__(self):
        self.saved = []

    def save_pretrained(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        self.saved.append(Path(path))

    def train(self, mode=True):
        self.training = mode


class _FakeProcessor:
    def save_pretrained(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)


def test_eval_callback_excludes_evaluation_time_and_keeps_the_rng(tmp_path):
    import torch

    def slow_eval(folder):
        assert folder.exists()
        torch.rand(5)  # evaluation must not move the training RNG
        time.sleep(0.3)
        return dict.fromkeys(METRICS, 0.5)

    class State:
        global_step = 0

    callback = curves.make_eval_callback([2, 3], slow_eval, tmp_path / "scratch")
    model, processor, state = _FakeModel(), _FakeProcessor(), State()
    callback.on_train_begin(None, state, None)
    for step in (1, 2, 3):
        state.global_step = step
        before = torch.get_rng_state()
        callback.on_step_end(None, state, None, model=model, processing_class=processor)
        assert torch.equal(before, torch.get_rng_state())
    assert [p["step"] for p in callback.points] == [2, 3] and len(model.saved) == 2
    assert callback.eval_seconds >= 0.6
    assert callback.points[1]["seconds"] < 0.3  # the evaluations' 0.6 s are not training time
    assert model.training and not math.isnan(callback.points[0]["acc_visual_image"])


def test_variant_choice_on_validation_by_auc_over_full_test_window():
    def curve(values, tokens_per_step=100):
        return [
            {
                "step": 10 * i,
                "generated_tokens": tokens_per_step * i,
                "seconds": float(i),
                **dict.fromkeys(METRICS, v),
            }
            for i, v in enumerate(values)
        ]

    results = {
        "readouts": {"full_reference": {"generated_tokens": {"end": 400.0}}},
        "scoring": {
            "rap_learnable": {"generated_tokens": 200, "seconds": 1.0},
            "cde_passrate": {"generated_tokens": 0, "seconds": 0.0},
            "rap": {"generated_tokens": 0, "seconds": 0.0},
        },
        "validation": {
            # Higher at the end, but pays 200 tokens of scoring first: AUC (0.3*200 + trapezoids) / 400.
            "rap_learnable": {"seeds": {"0": curve([0.3, 0.9, 0.9]), "1": curve([0.3, 0.9, 0.9])}},
            "cde_passrate": {"seeds": {"0": curve([0.3, 0.6, 0.6, 0.6, 0.6])}},
            "rap": {"seeds": {"0": curve([1.0, 1.0])}},  # a default arm: never a candidate
        },
    }
    choice = curves.choose_variant(results)
    assert set(choice["scores"]) == {"rap_learnable", "cde_passrate"}
    learnable = (0.3 * 200 + (0.3 + 0.9) / 2 * 100 + 0.9 * 100) / 400
    passrate = ((0.3 + 0.6) / 2 * 100 + 0.6 * 300) / 400
    assert choice["scores"]["rap_learnable"]["auc"]["mean"] == pytest.approx(learnable)
    assert choice["scores"]["cde_passrate"]["auc"]["mean"] == pytest.approx(passrate)
    assert passrate > learnable and choice["winner"] == "cde_passrate"  # the scoring head start costs it
    assert "**" + choice["winner"] + "**" in curves.choice_table(choice)
    del results["readouts"]
    assert curves.choose_variant(results) is None  # no full test curves: no window
