"""The shipped `evaluate` metric `rap_pass_at_1`, loaded by local path (no Hub)."""

import math

import evaluate
import pytest

from rap_hf.metrics import PASS_AT_1_PATH, load_pass_at_1


def test_loads_by_local_path_and_scores_with_the_project_reward():
    metric = evaluate.load(PASS_AT_1_PATH)
    result = metric.compute(
        predictions=[
            "The digits are 3 and 4. 3 + 4 = 7. \\boxed{7}",
            "\\boxed{8}",  # wrong
            "The answer is 0.5",  # right, no box: the reward's fallback extraction
            "no answer at all",
        ],
        references=["7", "7", "1/2", "3"],
    )
    assert result == {"pass@1": 0.5, "correct": 2, "n": 4}


def test_helper_and_edge_cases():
    metric = load_pass_at_1()
    assert metric.compute(predictions=["\\boxed{12}"], references=["12"])["pass@1"] == 1.0
    empty = metric.compute(predictions=[], references=[])
    assert empty["n"] == 0 and math.isnan(empty["pass@1"])
    with pytest.raises(ValueError):
        metric.compute(predictions=["\\boxed{1}", "\\boxed{2}"], references=["1"])
