"""Tests for rap_hf.rewards: answer extraction, equivalence, TRL-style reward functions."""

from __future__ import annotations

import logging
import math
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from rap_hf.rewards import (
    accuracy_reward,
    answers_match,
    compute_rewards,
    extract_answer,
    is_choice_letter,
    normalize_solution,
    resolve_reward_fn,
)

# --------------------------------------------------------------------------------------------------
# extract_answer
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        # \boxed, nested braces, last one wins, truncated box ignored
        (r"So the result is \boxed{42}.", "42"),
        (r"Thus \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{x^{2}+1}", "x^{2}+1"),
        (r"First \boxed{3}, no wait, \boxed{5}", "5"),
        (r"\boxed{7} and then \boxed{", "7"),
        (r"\boxed {12}", "12"),
        (r"\boxed{} so 9", "9"),
        # boxed beats everything else
        (r"<answer>3</answer> but really \boxed{4}", "4"),
        # <answer> tags
        ("<think>hmm 12</think><answer> 7 </answer>", "7"),
        ("<answer>x+1</answer>", "x+1"),
        (r"<answer>$\frac{3}{4}$</answer>", r"\frac{3}{4}"),
        ("<answer>The answer is (C)</answer>", "C"),
        ("<answer>B. a red car</answer>", "B"),
        ("<answer>1</answer> then <answer>2</answer>", "2"),
        # "answer is" / "Answer:"
        ("The answer is (C).", "C"),
        ("Therefore the final answer is 17.", "17"),
        ("Answer: 3/4", "3/4"),
        ("**Answer:** 1,000", "1,000"),
        (r"The final answer is $\frac{3}{4}$.", r"\frac{3}{4}"),
        ("The answer is B. Because the image shows it.", "B"),
        ("The answer is 3.5. Done", "3.5"),
        ("The answer is not obvious. After computing, we get 42.", "42"),
        # trailing choice letter
        ("Looking at the chart, I choose (B)", "B"),
        ("Comparing the options: D.", "D"),
        ("So it is **A**", "A"),
        ("so option C", "C"),
        # trailing math segment and numbers
        (r"so $x = \frac{1}{2}$.", r"\frac{1}{2}"),
        ("so we get 42.", "42"),
        ("The temperature drops to -5", "-5"),
        ("x = -3.25 degrees", "-3.25"),
        ("the total is 1,234 apples", "1234"),
        ("half of it, 3/4 of the rest", "3/4"),
        ("12 minus 7 is 3-2", "2"),
        ("Step 1: add. Step 2: we get 0.5 here", "0.5"),
        # nothing
        ("I cannot tell from the image.", None),
        ("", None),
        ("   \n", None),
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_extract_answer_non_string_is_none():
    assert extract_answer(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "completion",
    [
        "Ответ: 5 яблок",
        "答案是 \\boxed{五}",
        "🙂 résumé — naïve ∑∫ 😀",
        "\x00\ufffd",
        "日本語の答えは 5 です",
    ],
)
def test_non_ascii_completions_do_not_crash(completion):
    extract_answer(completion)
    assert accuracy_reward([completion], ["5"])[0] in (0.0, 1.0)


def test_non_ascii_answers_extracted():
    assert extract_answer("日本語の答えは 5 です") == "5"
    assert extract_answer("答案是 \\boxed{五}") == "五"
    assert accuracy_reward(["答案是 \\boxed{五}"], ["五"]) == [1.0]


# --------------------------------------------------------------------------------------------------
# normalize_solution / is_choice_letter
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        ("42", "42"),
        ("  x+1 ", "x+1"),
        (7, "7"),
        (0.5, "0.5"),
        (12.0, "12.0"),
        ("<answer> B </answer>", "B"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"<answer>\boxed{3}</answer>", "3"),
        ("$\\sqrt{2}$", "\\sqrt{2}"),
        (None, None),
        ("", None),
        ("   ", None),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_normalize_solution(solution, expected):
    assert normalize_solution(solution) == expected


def test_normalize_solution_numpy_scalars():
    np = pytest.importorskip("numpy")
    assert normalize_solution(np.int64(7)) == "7"
    assert normalize_solution(np.float64(0.5)) == "0.5"


@pytest.mark.parametrize("s", ["A", "b", "(C)", "D.", "(e)", " J ", "[F]", "G)"])
def test_is_choice_letter_true(s):
    assert is_choice_letter(s)


@pytest.mark.parametrize("s", ["K", "AB", "12", "", "x+1", "(A) 12", "cat"])
def test_is_choice_letter_false(s):
    assert not is_choice_letter(s)


# --------------------------------------------------------------------------------------------------
# answers_match
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicted", "solution"),
    [
        ("12", "12.0"),
        ("12.0", "12"),
        ("1/2", "0.5"),
        (r"\frac{1}{2}", "0.5"),
        ("0.5", r"\frac12"),
        ("x+1", "1+x"),
        ("3/4", "0.75"),
        ("-5.0", "-5"),
        ("1,000", "1000"),
        (r"2\sqrt{3}", r"\sqrt{12}"),
        ("12 apples", "12"),
        ("Yes", "yes"),
        ("red car", "Red Car"),
        # choice letters, case-insensitive, with markers
        ("c", "C"),
        ("(C)", "C"),
        ("C", "(c)"),
        ("(B) 12", "B"),
        (r"\text{D}", "D"),
        # non-string ground truth
        ("7", 7),
        ("7.0", 7),
        ("1/2", 0.5),
        # wrapped ground truth
        ("2", r"\boxed{2}"),
        ("2", "<answer>2</answer>"),
    ],
)
def test_answers_match_equal(predicted, solution):
    assert answers_match(predicted, solution)


@pytest.mark.parametrize(
    ("predicted", "solution"),
    [
        ("12", "13"),
        ("0.5", "0.6"),
        ("x+1", "x+2"),
        ("x+1", "1"),  # must not read "x+1" as its last number
        ("B", "C"),
        ("12", "C"),
        ("A cat", "A"),  # "A" as an article is not choice A
        ("act", "cat"),  # word answers are strings, not products of symbols
        (None, "12"),
        ("", "12"),
        ("12", None),
        ("12", ""),
    ],
)
def test_answers_match_not_equal(predicted, solution):
    assert not answers_match(predicted, solution)


# --------------------------------------------------------------------------------------------------
# accuracy_reward
# --------------------------------------------------------------------------------------------------


def test_accuracy_reward_plain_strings():
    completions = [r"\boxed{\frac{1}{2}}", "The answer is (C).", "so we get 42.", "I give up"]
    assert accuracy_reward(completions, ["0.5", "C", "41", "7"]) == [1.0, 1.0, 0.0, 0.0]


def test_accuracy_reward_conversational():
    completions = [
        [{"role": "assistant", "content": r"My answer is \boxed{\frac{1}{3}}"}],
        [{"role": "assistant", "content": r"My answer is \boxed{\frac{1}{2}}"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "<answer>B</answer>"}]}],
        [
            {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}]},
            {"role": "tool", "content": "the answer is 99"},
            {"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "Answer: 5"}]},
        ],
        {"role": "assistant", "content": "Answer: 6"},
    ]
    solutions = [r"\frac{1}{3}", r"\frac{1}{3}", "B", "5", 6]
    assert accuracy_reward(completions, solutions) == [1.0, 0.0, 1.0, 1.0, 1.0]


def test_accuracy_reward_non_string_solutions():
    assert accuracy_reward(["so 7", "it is 0.5", "1/2", "7.5"], [7, 0.5, 0.5, 7]) == [1.0, 1.0, 1.0, 0.0]


def test_accuracy_reward_missing_solution_is_zero():
    completions = [r"\boxed{1}", r"\boxed{1}", r"\boxed{1}", "nothing"]
    assert accuracy_reward(completions, [None, "", "   ", None]) == [0.0, 0.0, 0.0, 0.0]


def test_accuracy_reward_ignores_trainer_kwargs():
    out = accuracy_reward(["\\boxed{2}"], ["2"], prompts=["p"], trainer_state=None, log_extra=None)
    assert out == [1.0]


def test_accuracy_reward_length_mismatch():
    with pytest.raises(ValueError, match="one solution per completion"):
        accuracy_reward(["1", "2"], ["1"])


def test_accuracy_reward_bad_completion_type():
    with pytest.raises(TypeError, match="unsupported completion type"):
        accuracy_reward([3.5], ["3.5"])


def test_accuracy_reward_in_worker_threads():
    """math_verify's signal.alarm timeouts only work in the main thread; worker threads must still score."""
    completions = [r"\boxed{\frac{1}{2}}", "x+1 is the answer: 1+x", "The answer is (C).", "so 13"] * 4
    solutions = ["0.5", "x+1", "C", "12"] * 4
    expected = [1.0, 1.0, 1.0, 0.0] * 4
    seen_threads = set()

    def score(i):
        seen_threads.add(threading.current_thread() is threading.main_thread())
        return accuracy_reward([completions[i]], [solutions[i]])[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(score, range(len(completions))))
    assert seen_threads == {False}
    assert results == expected


def test_accuracy_reward_in_worker_processes():
    """datasets.map(num_proc=...) runs rewards in forked worker processes (main thread there: alarms work)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        results = list(pool.map(accuracy_reward, [[r"\boxed{x+1}"], ["so 13"]], [["1+x"], ["12"]]))
    assert results == [[1.0], [0.0]]


def test_no_timeout_warning_in_threads(caplog, monkeypatch):
    # math_verify warns once per process; re-arm it so this test sees the first warning.
    monkeypatch.setattr("math_verify.parser.TIMEOUT_WARNING_SHOWN", False)
    monkeypatch.setattr("math_verify.grader.TIMEOUT_WARNING_SHOWN", False)
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(accuracy_reward, [r"\boxed{x+1}"], ["1+x"]).result() == [1.0]
    assert not any("Timeout is disabled" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------------
# resolve_reward_fn / compute_rewards
# --------------------------------------------------------------------------------------------------


def _length_reward(completions, solution, **kwargs):
    scale = kwargs.get("scale", 1.0)
    return [min(1.0, scale * len(c) / 10) for c in completions]


def test_resolve_reward_fn_default_and_callable():
    assert resolve_reward_fn() is accuracy_reward
    assert resolve_reward_fn(None) is accuracy_reward
    assert resolve_reward_fn("accuracy") is accuracy_reward
    assert resolve_reward_fn(_length_reward) is _length_reward


def test_resolve_reward_fn_import_path():
    assert resolve_reward_fn("rap_hf.rewards:accuracy_reward") is accuracy_reward
    assert resolve_reward_fn("rap_hf.rewards.accuracy_reward") is accuracy_reward
    with pytest.raises(ValueError, match="cannot import"):
        resolve_reward_fn("rap_hf.rewards:no_such_fn")


@pytest.mark.parametrize("bad", [42, [1.0], object()])
def test_resolve_reward_fn_not_callable(bad):
    with pytest.raises(TypeError, match="must be callable"):
        resolve_reward_fn(bad)


def test_resolve_reward_fn_wrong_signature():
    def wrong(x, y):
        return [0.0]

    with pytest.raises(TypeError, match="completions"):
        resolve_reward_fn(wrong)


def test_resolve_reward_fn_kwargs_only_signature():
    def reads_kwargs(completions, **kwargs):
        return [float(c == kwargs["solution"][i]) for i, c in enumerate(completions)]

    assert resolve_reward_fn(reads_kwargs) is reads_kwargs
    assert compute_rewards(reads_kwargs, ["a", "b"], ["a", "c"]) == [1.0, 0.0]


def test_compute_rewards_default_and_passthrough_kwargs():
    assert compute_rewards(None, [r"\boxed{3}", "4"], ["3", "5"]) == [1.0, 0.0]
    assert compute_rewards(accuracy_reward, ["Answer: B"], ["B"]) == [1.0]

    received = {}

    def user_fn(completions, solution, **kwargs):
        received.update(kwargs, solution=solution)
        return [0.25] * len(completions)

    out = compute_rewards(user_fn, ["x", "y"], ["1", "2"], image_id=[10, 11], arm="text")
    assert out == [0.25, 0.25]
    assert received == {"solution": ["1", "2"], "image_id": [10, 11], "arm": "text"}
    assert compute_rewards(_length_reward, ["12345"], ["?"], scale=2.0) == [1.0]


def test_compute_rewards_none_bool_numpy_and_clipping(caplog):
    assert compute_rewards(lambda completions, solution, **kw: [None, True, 0], ["a"] * 3, ["a"] * 3) == [
        0.0,
        1.0,
        0.0,
    ]
    np = pytest.importorskip("numpy")
    out = compute_rewards(lambda completions, solution, **kw: np.array([0.5, 1.0]), ["a", "b"], ["a", "b"])
    assert out == [0.5, 1.0] and all(type(v) is float for v in out)
    with caplog.at_level(logging.WARNING, logger="rap_hf.rewards"):
        out = compute_rewards(lambda completions, solution, **kw: [-1.0, 2.0], ["a", "b"], ["a", "b"])
    assert out == [0.0, 1.0]
    assert "clipped" in caplog.text


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ([1.0], "returned 1 rewards for 2 completions"),
        ([1.0, 0.0, 1.0], "returned 3 rewards for 2 completions"),
        (["1.0", 0.0], "non-numeric"),
        ([1.0, [0.0]], "non-numeric"),
        ([1.0, math.nan], "non-finite"),
        ([math.inf, 0.0], "non-finite"),
        (1.0, "must return a list"),
        ("10", "must return a list"),
        (None, "must return a list"),
        ({0: 1.0, 1: 0.0}, "must return a list"),
    ],
)
def test_compute_rewards_rejects_bad_output(returned, message):
    def bad(completions, solution, **kwargs):
        return returned

    with pytest.raises(ValueError, match=message):
        compute_rewards(bad, ["a", "b"], ["a", "b"])


def test_compute_rewards_length_mismatch_inputs():
    with pytest.raises(ValueError, match="2 completions but 1 solutions"):
        compute_rewards(accuracy_reward, ["a", "b"], ["a"])
