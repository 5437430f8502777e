"""Decision-aware scoring (text_arm="decisive", issue 17 part 1): the text-only arm stops once CDE is settled."""

import math
import shutil

import numpy as np
import pytest

from rap_hf import RAPConfig, select_cognitive_samples
from rap_hf.config import RAPScoringConfig
from rap_hf.demo.reference_model import reference_model_available, reference_model_path
from rap_hf.errors import RAPUserError
from rap_hf.scoring.decisive import (
    KEEP,
    REJECT,
    decisive_scores,
    next_wave_size,
    settled_decision,
    wave_plan,
    wave_size,
)

needs_model = pytest.mark.skipif(
    not reference_model_available(), reason="reference model not shipped in this checkout"
)


# ------------------------------------------------------------------------------------------------ the rule


def test_issue_example_acc_mm_1_five_rollouts():
    mm = [1.0] * 5
    assert next_wave_size(mm, [], 5, 0.5) == 3
    assert settled_decision(mm, [0.0, 0.0, 0.0], 5, 0.5) == KEEP  # CDE >= 1 - 2/5
    assert settled_decision(mm, [1.0, 1.0, 1.0], 5, 0.5) == REJECT  # CDE <= 1 - 3/5
    assert settled_decision(mm, [0.0, 1.0], 5, 0.5) is None
    assert next_wave_size(mm, [0.0, 1.0], 5, 0.5) == 2  # two more failures would keep it
    # per wave: the fewest that could settle it, or the rest of M in the last wave; nothing once settled
    assert wave_size(mm, [0.0, 1.0], 5, 0.5, last_wave=False) == 2
    assert wave_size(mm, [0.0, 1.0], 5, 0.5, last_wave=True) == 3
    assert wave_size(mm, [0.0, 0.0, 0.0], 5, 0.5, last_wave=True) == 0
    assert wave_plan(1) == (True,) and wave_plan(2) == (False, True)


def test_rows_below_lambda_c_need_no_text_rollout():
    mm = [1.0, 1.0, 0.0, 0.0, 0.0]  # acc_mm 0.4 < 0.5
    assert settled_decision(mm, [], 5, 0.5) == REJECT and next_wave_size(mm, [], 5, 0.5) == 0
    scores = decisive_scores(mm, [], 5, 0.5)
    assert math.isnan(scores["rap_acc_text"]) and scores["rap_text_rollouts"] == 0
    assert scores["rap_cde"] == 0.4 and scores["rap_cde_bound"] == -1  # highest possible CDE


def test_threshold_on_the_grid_and_fractional_rewards():
    mm = [1.0, 1.0, 1.0, 0.0, 0.0]  # acc_mm 0.6
    # lambda_c = 0.2 exactly on the grid: kept once 3 text rollouts failed (CDE >= 0.6 - 2/5 = 0.2)
    assert settled_decision(mm, [0.0, 0.0, 0.0], 5, 0.2) == KEEP
    assert settled_decision(mm, [0.0, 0.0], 5, 0.2) is None
    # a fractional reward is counted conservatively: 0.5 settles nothing that a 1 would not
    assert settled_decision(mm, [0.5, 0.5, 0.5], 5, 0.2) is None
    complete = decisive_scores(mm, [0.0, 1.0, 0.0, 0.0, 1.0], 5, 0.2)
    assert (
        complete["rap_cde"] == 0.2 and complete["rap_cde_bound"] == 0 and complete["rap_text_rollouts"] == 5
    )


def test_partial_scores_give_the_settled_decision_and_bound_the_full_cde():
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(1, 7))
        lam = float(rng.choice([0.0, 0.2, 0.5, 0.8, 1.0]))
        mm = rng.integers(0, 2, m).astype(float).tolist()
        text = rng.integers(0, 2, m).astype(float).tolist()
        full = decisive_scores(mm, text, m, lam)
        n = 0
        while next_wave_size(mm, text[:n], m, lam):
            n += next_wave_size(mm, text[:n], m, lam)
        part = decisive_scores(mm, text[:n], m, lam)
        assert (part["rap_cde"] >= lam - 1e-9) == (full["rap_cde"] >= lam - 1e-9)
        if part["rap_cde_bound"] > 0:
            assert full["rap_cde"] >= part["rap_cde"]
        elif part["rap_cde_bound"] < 0:
            assert full["rap_cde"] <= part["rap_cde"]
        else:
            assert part == full


# ------------------------------------------------------------------------------------------------ config


def test_config_fingerprint_and_threshold():
    full = RAPScoringConfig()
    assert "text_arm" not in full.fingerprint_values()  # a full run keeps its old fingerprint
    decisive = RAPScoringConfig(text_arm="decisive")
    assert decisive.fingerprint_values()["decisive_lambda_c"] == 0.5
    assert RAPScoringConfig.of(RAPConfig(text_arm="decisive", lambda_c=0.4)).decisive_lambda_c == 0.4
    assert RAPConfig(text_arm="decisive", lambda_c=0.4).decisive_threshold() == 0.4
    with pytest.raises(RAPUserError, match="decisive_lambda_c"):
        RAPConfig(text_arm="decisive", lambda_c=0.4, decisive_lambda_c=0.5)
    with pytest.raises(RAPUserError, match="text_arm"):
        RAPScoringConfig(text_arm="half")


def test_decisive_waves_option_fingerprint_and_completion():
    from rap_hf.scoring.completion import completes

    two = RAPScoringConfig(text_arm="decisive", decisive_waves=2).fingerprint_values()
    assert "decisive_waves" not in two  # the two-wave runs from before the option keep their fingerprint
    assert "decisive_waves" not in RAPScoringConfig().fingerprint_values()  # full: ignored
    one = RAPScoringConfig(text_arm="decisive").fingerprint_values()
    assert one["decisive_waves"] == 1  # the default
    with pytest.raises(RAPUserError, match="decisive_waves"):
        RAPScoringConfig(text_arm="decisive", decisive_waves=3)
    # A full run completes a one-wave decisive run with otherwise equal settings, and nothing else.
    full = {"model": "m", "rap_config": RAPScoringConfig().fingerprint_values()}
    assert completes({"model": "m", "rap_config": one}, full)
    assert not completes({"model": "m", "rap_config": {**one, "seed": 1}}, full)


# ------------------------------------------------------------------------------------------------ selection


def _partial_dataset():
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "rap_acc_mm": [1.0, 1.0, 0.4, 1.0],
            "rap_cde": [0.6, 0.4, 0.4, 0.8],
            "rap_ace": [0.0] * 4,
            "rap_cde_bound": [1.0, -1.0, -1.0, 0.0],
            "rap_error": [None] * 4,
        }
    )


def test_selection_of_partial_rows():
    ds = _partial_dataset()
    stages = select_cognitive_samples(ds, RAPConfig(use_drm=False))["rap_stage"]
    assert stages == ["kept", "cde_rejected", "cde_rejected", "kept"]
    # 0.6 still decides every row (lower bound 0.6 passes, upper bounds 0.4 fail)
    select_cognitive_samples(ds, RAPConfig(lambda_c=0.6, use_drm=False))
    with pytest.raises(RAPUserError, match="0.4 < lambda_c <= 0.6"):
        select_cognitive_samples(ds, RAPConfig(lambda_c=0.3))  # lower: the rejected rows are undecided
    with pytest.raises(RAPUserError, match="lambda_c=0.7"):
        select_cognitive_samples(ds, RAPConfig(lambda_c=0.7))  # higher: the kept row is undecided
    with pytest.raises(RAPUserError, match="budget"):
        select_cognitive_samples(ds, RAPConfig(target_ratio=0.5))
    exact = ds.remove_columns("rap_cde_bound")
    select_cognitive_samples(exact, RAPConfig(lambda_c=0.3, target_ratio=0.5))  # old data: no check


# ------------------------------------------------------------------------------------------------ engine


def test_tiny_model_decisive_skips_text_arm(tiny_filter_factory):
    from rap_hf.demo.data import tiny_synthetic

    data = tiny_synthetic(4)
    from rap_hf.scoring.alarms import DegenerateScoresWarning

    with pytest.warns(DegenerateScoresWarning):  # no text rollout ran, every reward is still 0
        scored = tiny_filter_factory(text_arm="decisive", compute_ace=False).score(data)
    # the random tiny model solves nothing: acc_mm = 0 < 0.5, so no text rollout runs
    assert scored["rap_text_rollouts"] == [0.0] * 4
    assert scored["rap_cde_bound"] == [-1.0] * 4 and scored["rap_completions_text"] == [[]] * 4
    full = tiny_filter_factory(compute_ace=False).score(data)
    assert full["rap_text_rollouts"] == [2.0] * 4 and full["rap_cde_bound"] == [0.0] * 4
    assert scored["rap_completions_mm"] == full["rap_completions_mm"]


@pytest.fixture(scope="module")
def reference_runs():
    from rap_hf import RAPDataFilter
    from rap_hf.demo.visual_arith import visual_arith

    data = visual_arith("test", num_rows=8)
    common = {"num_rollouts": 5, "max_new_tokens": 48, "compute_ace": False}
    path = str(reference_model_path())
    runs = {}
    for name, batch_size, text_arm, waves in (
        ("full", 4, "full", 2),
        ("decisive", 4, "decisive", 2),
        ("decisive_b1", 1, "decisive", 2),
        ("one_wave", 4, "decisive", 1),
        ("one_wave_b1", 1, "decisive", 1),
    ):
        config = RAPConfig(batch_size=batch_size, text_arm=text_arm, decisive_waves=waves, **common)
        runs[name] = RAPDataFilter(path, config=config).score(data)
    return runs


@needs_model
def test_reference_model_same_selection_and_prefix(reference_runs):
    full, decisive = reference_runs["full"], reference_runs["decisive"]
    assert full["rap_acc_mm"] == decisive["rap_acc_mm"]
    assert full["rap_completions_mm"] == decisive["rap_completions_mm"]
    for whole, part, n in zip(
        full["rap_completions_text"],
        decisive["rap_completions_text"],
        decisive["rap_text_rollouts"],
        strict=True,
    ):
        assert len(part) == n and whole[: len(part)] == part
    exact = [b == 0 for b in decisive["rap_cde_bound"]]
    assert not all(exact)  # some rows stopped early
    for name in ("rap_acc_text", "rap_cde"):
        assert [v for v, e in zip(full[name], exact, strict=True) if e] == [
            v for v, e in zip(decisive[name], exact, strict=True) if e
        ]
    a = select_cognitive_samples(full, RAPConfig())
    b = select_cognitive_samples(decisive, RAPConfig())
    assert a["rap_stage"] == b["rap_stage"] and a["rap_selected"] == b["rap_selected"]
    assert sum(decisive["rap_text_rollouts"]) < sum(full["rap_text_rollouts"])


@needs_model
@pytest.mark.parametrize("mode", ["decisive", "one_wave"])
def test_reference_model_decisive_batch_size_independent(reference_runs, mode):
    b4, b1 = reference_runs[mode], reference_runs[f"{mode}_b1"]
    a, b = b4.to_pandas(), b1.to_pandas()
    for name in a.columns:
        if name.startswith("rap_"):
            assert a[name].equals(b[name]), name


@needs_model
def test_reference_model_one_wave_is_exact_where_it_runs(reference_runs):
    """decisive_waves=1: every row with acc_mm >= lambda_c gets all M text-only rollouts (the full run's
    values), the others none; the selection is the full run's."""
    full, one = reference_runs["full"].to_pandas(), reference_runs["one_wave"].to_pandas()
    ran = one["rap_acc_mm"] >= 0.5
    assert ran.any() and (~ran).any()
    assert (one.loc[ran, "rap_text_rollouts"] == 5).all() and (one.loc[~ran, "rap_text_rollouts"] == 0).all()
    assert (one.loc[ran, "rap_cde_bound"] == 0).all() and (one.loc[~ran, "rap_cde_bound"] == -1).all()
    for name in ("rap_acc_text", "rap_cde"):
        assert one.loc[ran, name].equals(full.loc[ran, name]), name
    one_texts, full_texts = (reference_runs[k]["rap_completions_text"] for k in ("one_wave", "full"))
    for mine, whole, run in zip(one_texts, full_texts, ran, strict=True):
        assert mine == (whole if run else [])
    a = select_cognitive_samples(reference_runs["full"], RAPConfig())
    b = select_cognitive_samples(reference_runs["one_wave"], RAPConfig())
    assert a["rap_stage"] == b["rap_stage"] and a["rap_selected"] == b["rap_selected"]
    # one call per batch, so more rollouts than two waves but fewer than a full run
    counts = [sum(reference_runs[k]["rap_text_rollouts"]) for k in ("decisive", "one_wave", "full")]
    assert counts[0] <= counts[1] < counts[2]


# ------------------------------------------------------------------------------------------------ completion


def _fingerprint(output):
    import json

    return json.loads((output / "rap_scoring.json").read_text())["fingerprint"]


def _score_columns(ds):
    frame = ds.to_pandas()
    return frame[[c for c in frame.columns if c.startswith("rap_")]]


@pytest.fixture(scope="module")
def completion_runs(tmp_path_factory):
    """A decisive run completed by a full run in the same folder, and a full run from scratch."""
    from rap_hf.demo.visual_arith import visual_arith
    from rap_hf.scoring.distributed import score_to_disk

    root = tmp_path_factory.mktemp("completion")
    data = visual_arith("test", num_rows=8)
    common = {"num_rollouts": 5, "max_new_tokens": 48, "batch_size": 4}
    path = str(reference_model_path())
    # Two waves: partial rows that ran some text-only rollouts (one wave leaves only rows that ran none).
    decisive = score_to_disk(
        path, data, root / "out", RAPConfig(text_arm="decisive", decisive_waves=2, **common)
    )
    shutil.copytree(root / "out", root / "decisive_copy")
    completed = score_to_disk(path, data, root / "out", RAPConfig(**common))
    full = score_to_disk(path, data, root / "full", RAPConfig(**{**common, "batch_size": 3}))
    return {"data": data, "root": root, "decisive": decisive, "completed": completed, "full": full}


@needs_model
def test_completing_a_decisive_run_equals_a_full_run(completion_runs):
    decisive, completed, full = (completion_runs[k] for k in ("decisive", "completed", "full"))
    assert sum(decisive.dataset["rap_text_rollouts"]) < sum(full.dataset["rap_text_rollouts"])
    a, b = _score_columns(completed.dataset), _score_columns(full.dataset)
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        assert a[name].equals(b[name]), name
    # exactly the skipped rollouts were generated, and the folder is an ordinary finished full run
    meta = completed.metadata
    assert meta["text_rollouts_added"] == sum(full.dataset["rap_text_rollouts"]) - sum(
        decisive.dataset["rap_text_rollouts"]
    )
    assert meta["generated_tokens"] < full.metadata["generated_tokens"] / 2
    out = completion_runs["root"] / "out"
    assert not (out / "rap_completing_from").exists()
    assert _fingerprint(out) == _fingerprint(completion_runs["root"] / "full")


@needs_model
def test_interrupted_completion_resumes_and_foreign_settings_are_refused(completion_runs, tmp_path):
    import json

    from rap_hf.scoring.checkpointing import CheckpointMismatchError, fingerprint_of
    from rap_hf.scoring.completion import prepare_completion
    from rap_hf.scoring.distributed import score_to_disk

    data, path = completion_runs["data"], str(reference_model_path())
    common = {"num_rollouts": 5, "max_new_tokens": 48, "batch_size": 4}
    out = tmp_path / "out"
    shutil.copytree(completion_runs["root"] / "decisive_copy", out)
    # A completion with other settings (another seed) is refused and leaves the decisive run in place.
    with pytest.raises(CheckpointMismatchError, match="seed"):
        score_to_disk(path, data, out, RAPConfig(seed=7, **common))
    assert (out / "rap_scoring.json").exists()
    # The completion dies right after moving the decisive scores aside: the next run picks them up.
    meta = json.loads((out / "rap_scoring.json").read_text())
    inputs = {**meta["fingerprint_inputs"], "rap_config": RAPConfig(**common).scoring().fingerprint_values()}
    assert prepare_completion(out, inputs, overwrite=False) is not None
    assert not (out / "rap_scoring.json").exists() and (out / "rap_completing_from").is_dir()
    with pytest.raises(CheckpointMismatchError, match="interrupted completion"):
        score_to_disk(path, data, out, RAPConfig(seed=7, **common))
    resumed = score_to_disk(path, data, out, RAPConfig(**common))
    assert fingerprint_of(inputs) == _fingerprint(out) == _fingerprint(completion_runs["root"] / "full")
    a, b = _score_columns(resumed.dataset), _score_columns(completion_runs["full"].dataset)
    for name in a.columns:
        assert a[name].equals(b[name]), name


@needs_model
@pytest.mark.filterwarnings("ignore::rap_hf.scoring.alarms.DegenerateScoresWarning")
def test_completion_needs_the_completions(tmp_path):
    from rap_hf.demo.visual_arith import visual_arith
    from rap_hf.scoring.checkpointing import CheckpointMismatchError
    from rap_hf.scoring.distributed import score_to_disk

    data, path = visual_arith("test", num_rows=4), str(reference_model_path())
    common = {"num_rollouts": 3, "max_new_tokens": 16, "keep_completions": False, "compute_ace": False}
    score_to_disk(path, data, tmp_path / "out", RAPConfig(text_arm="decisive", **common))
    with pytest.raises(CheckpointMismatchError, match="keep_completions"):
        score_to_disk(path, data, tmp_path / "out", RAPConfig(**common))
