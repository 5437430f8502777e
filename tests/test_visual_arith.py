import numpy as np
import pytest

from rap_hf.dataset_loading import load_any_dataset
from rap_hf.demo.data import load_builtin
from rap_hf.demo.visual_arith import KINDS, scan_ids, visual_arith


def test_deterministic_by_seed():
    a, b = visual_arith("train", 40, seed=0), visual_arith("train", 40, seed=0)
    assert a["prompt"] == b["prompt"] and a["solution"] == b["solution"] and a["digits"] == b["digits"]
    assert all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a["image"], b["image"], strict=True)
    )
    c = visual_arith("train", 40, seed=1)
    assert c["digits"] != a["digits"]


def test_train_and_test_use_disjoint_digit_scans():
    train, test = set(scan_ids("train")), set(scan_ids("test"))
    assert not train & test
    assert len(train) + len(test) == 1797  # every scan of sklearn's digits is in exactly one split
    # the rows differ too: the same question about the same digits is drawn from other scans
    assert visual_arith("test", 20)["image"][0].tobytes() != visual_arith("train", 20)["image"][0].tobytes()


def test_kinds_answers_and_leaks_are_consistent():
    ds = visual_arith("test", 200, seed=0)
    assert set(ds["kind"]) == set(KINDS)
    for row in ds:
        digits = row["digits"]
        question = row["prompt"][0]["content"][1]["text"]
        if row["kind"] == "hard":
            assert len(digits) == 3 and row["solution"] == str(int(np.prod(digits)))
        else:
            assert len(digits) == 2 and row["solution"] == str(sum(digits))
        leaked = "The image shows the digits" in question
        assert leaked == (row["kind"] == "text_leak")
        if leaked:
            assert f"{digits[0]} and {digits[1]}" in question
        assert row["reference_completion"].endswith(f"\\boxed{{{row['solution']}}}")
        assert row["image"].size == (112, 56)


def test_loadable_by_name():
    assert len(load_builtin("visual-arith", split="test", num_rows=5)) == 5
    assert load_any_dataset("builtin:visual-arith", split="test")[0]["kind"] in KINDS
    with pytest.raises(ValueError, match="splits"):
        visual_arith("validation")
    with pytest.raises(ValueError, match="unknown built-in"):
        load_builtin("nope")


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_train_rows_of_any_seed_never_show_a_test_scan(seed, monkeypatch):
    """The scan split does not move with the row seed (a seed-1 GRPO pool once drew test scans)."""
    import rap_hf.demo.visual_arith as va

    images, _ = va._digits()
    test_scans = {images[i].tobytes() for i in scan_ids("test")}
    drawn = []
    original = va.make_row

    def record(kind, digits, scans, rng):
        drawn.extend(scan.tobytes() for scan in scans)
        return original(kind, digits, scans, rng)

    monkeypatch.setattr(va, "make_row", record)
    visual_arith("train", 100, seed=seed)
    assert len(drawn) >= 200 and not test_scans & set(drawn)
    drawn.clear()
    visual_arith("test", 50, seed=seed)
    assert set(drawn) <= test_scans
