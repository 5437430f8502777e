"""The default reward on real answer formats: a table of cases in the published answer styles of MathVista,
MMStar, MathVerse, WeMath, LogicVista and short-answer VQA sets (cases written for this test, not copied),
plus the false positives it must not make. docs/rewards.md describes the rules."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from rap_hf.rewards import accuracy_reward, extract_answer

# MathVista: multiple-choice ground truth is the option *text*, with a `choices` column, and the query lists
# the choices as "(A) ..."; free-form answers are integers or floats.
MV_CHOICES = ["3/11", "8/11", "6/11", "3/5"]
MV_ANGLES = ["145°", "35°", "55°", "125°"]
MV_QUERY = "Question: What fraction is shaded?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5"
# MMStar: the ground truth is a letter; the options are inside the question.
MMSTAR_Q = (
    "Which option describes the object relationship in the image correctly?\nOptions: A: The suitcase is on "
    "the book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The suitcase is "
    "beneath the book."
)
# MathVerse: letter ground truth for multiple choice, the choices in the question as "A:2".
MATHVERSE_Q = "As shown in the figure, find the length of AB.\nChoices:\nA:2\nB:4\nC:6\nD:8"
MATHVERSE_FRAC_Q = "Find x.\nChoices:\nA:$\\frac{1}{2}$\nB:$\\frac{3}{2}$\nC:2\nD:3"
# WeMath: letter ground truth, an `option` column "A. 3cm; B. 4cm; ...".
WEMATH_OPTIONS = "A. 3cm; B. 4cm; C. 5cm; D. 6cm; E. No correct answer"
# LogicVista: letter ground truth (sometimes several letters), reasoning-style completions.
LOGIC_Q = "Which figure completes the sequence? Choose from A, B, C, D."

# (style, completion, solution, extra keyword arguments for accuracy_reward (one row), expected reward)
CASES = [
    # ---- MathVista ----
    ("MathVista", "(A)", "3/11", {"choices": [MV_CHOICES]}, 1.0),
    ("MathVista", "The answer is A.", "3/11", {"choices": [MV_CHOICES]}, 1.0),
    ("MathVista", "Answer: (B) 8/11", "3/11", {"choices": [MV_CHOICES]}, 0.0),
    ("MathVista", "\\boxed{\\frac{3}{11}}", "3/11", {"choices": [MV_CHOICES]}, 1.0),
    ("MathVista", "3/11", "3/11", {"choices": [MV_CHOICES]}, 1.0),
    ("MathVista", "The angle is 145 degrees, so the answer is (A).", "145°", {"choices": [MV_ANGLES]}, 1.0),
    ("MathVista", "\\boxed{145^\\circ}", "145°", {"choices": [MV_ANGLES]}, 1.0),
    ("MathVista", "(D) 125°", "145°", {"choices": [MV_ANGLES]}, 0.0),
    ("MathVista", "The bar for 2019 reaches 27 million.\nFinal answer: 27", "27", {}, 1.0),
    ("MathVista", "The ratio is 1.45.", "1.45", {}, 1.0),
    ("MathVista", "60%", "60", {}, 1.0),
    ("MathVista", "It is not 27; the answer is 25.", "27", {}, 0.0),
    ("MathVista", "1,000 people", "1000", {}, 1.0),
    ("MathVista", "B", "8/11", {"prompts": [MV_QUERY]}, 1.0),
    ("MathVista", "C", "8/11", {"prompts": [MV_QUERY]}, 0.0),
    # ---- MMStar ----
    ("MMStar", "A", "A", {"prompts": [MMSTAR_Q]}, 1.0),
    ("MMStar", "(A)", "A", {"prompts": [MMSTAR_Q]}, 1.0),
    ("MMStar", "A: The suitcase is on the book.", "A", {"prompts": [MMSTAR_Q]}, 1.0),
    ("MMStar", "Option A", "A", {"prompts": [MMSTAR_Q]}, 1.0),
    ("MMStar", "The suitcase is on the book.", "A", {"prompts": [MMSTAR_Q]}, 1.0),
    ("MMStar", "The suitcase is beneath the cat.", "A", {"prompts": [MMSTAR_Q]}, 0.0),
    ("MMStar", "The correct option is B.", "A", {"prompts": [MMSTAR_Q]}, 0.0),
    ("MMStar", "**D**", "D", {"prompts": [MMSTAR_Q]}, 1.0),
    ("MMStar", "Looking closely, I think it's (B).", "B", {"prompts": [MMSTAR_Q]}, 1.0),
    ("MMStar", "The answer is B, not C.", "B", {"prompts": [MMSTAR_Q]}, 1.0),
    ("MMStar", "Option B looks plausible, but the answer is D.", "B", {"prompts": [MMSTAR_Q]}, 0.0),
    ("MMStar", "c", "C", {}, 1.0),
    # ---- MathVerse ----
    ("MathVerse", "\\boxed{B}", "B", {"prompts": [MATHVERSE_Q]}, 1.0),
    ("MathVerse", "\\boxed{\\text{B}}", "B", {"prompts": [MATHVERSE_Q]}, 1.0),
    ("MathVerse", "By Pythagoras AB = 4. Therefore, the answer is 4.", "B", {"prompts": [MATHVERSE_Q]}, 1.0),
    ("MathVerse", "Therefore, the answer is 6.", "B", {"prompts": [MATHVERSE_Q]}, 0.0),
    ("MathVerse", "$\\frac{3}{2}$", "B", {"prompts": [MATHVERSE_FRAC_Q]}, 1.0),
    ("MathVerse", "So $x=\\frac{3}{2}$.", "\\frac{3}{2}", {}, 1.0),
    ("MathVerse", "\\boxed{y = 1 + 2x}", "y=2x+1", {}, 1.0),
    ("MathVerse", "The length is $5\\sqrt{2}$ cm.", "5\\sqrt{2}", {}, 1.0),
    ("MathVerse", "Thus, $\\angle ABC = 30^\\circ$.", "30", {}, 1.0),
    ("MathVerse", "\\boxed{\\mathrm{C}}", "B", {"prompts": [MATHVERSE_Q]}, 0.0),
    ("MathVerse", "The final answer is $\\boxed{2\\sqrt{3}}$. I hope it is correct.", "\\sqrt{12}", {}, 1.0),
    # ---- WeMath ----
    ("WeMath", "B", "B", {"option": [WEMATH_OPTIONS]}, 1.0),
    ("WeMath", "B. 4cm", "B", {"option": [WEMATH_OPTIONS]}, 1.0),
    ("WeMath", "4cm", "B", {"option": [WEMATH_OPTIONS]}, 1.0),
    ("WeMath", "The answer is 5cm", "B", {"option": [WEMATH_OPTIONS]}, 0.0),
    ("WeMath", "None of the lengths fits, so E.", "E", {"option": [WEMATH_OPTIONS]}, 1.0),
    ("WeMath", "<answer>C</answer>", "C", {"option": [WEMATH_OPTIONS]}, 1.0),
    ("WeMath", "<think>B looks right... no.</think><answer>C</answer>", "C", {}, 1.0),
    ("WeMath", "<think>C is tempting</think><answer>D</answer>", "C", {}, 0.0),
    ("WeMath", "B. 4 cm", "B. 4cm", {}, 1.0),
    ("WeMath", "4 cm", "B. 4cm", {}, 1.0),
    ("WeMath", "(A) 3cm", "B. 4cm", {}, 0.0),
    # ---- LogicVista ----
    (
        "LogicVista",
        "Let's analyze each pattern. The shapes rotate clockwise. The answer is (D).",
        "D",
        {},
        1.0,
    ),
    ("LogicVista", "Each row adds one dot. Therefore, the correct answer is D: 12.", "D", {}, 1.0),
    ("LogicVista", "The final answer is B", "A", {}, 0.0),
    ("LogicVista", "The answer is A and C.", "A, C", {}, 1.0),
    ("LogicVista", "The answer is A.", "A, C", {}, 0.0),
    ("LogicVista", "Among the options, the pattern continues with B", "B", {"prompts": [LOGIC_Q]}, 1.0),
    ("LogicVista", "A is wrong since the count is odd, B repeats a shape, so C.", "C", {}, 1.0),
    ("LogicVista", "A is wrong since the count is odd, B repeats a shape, so C.", "A", {}, 0.0),
    ("LogicVista", "Final Answer: (C)", "C", {}, 1.0),
    ("LogicVista", "I choose option C because the lines alternate.", "C", {}, 1.0),
    # ---- short-answer VQA (VQAv2, GQA, TextVQA, ...) ----
    ("VQA", "circle", "circle", {}, 1.0),
    ("VQA", "Circle.", "circle", {}, 1.0),
    ("VQA", "\\boxed{\\text{circle}}", "circle", {}, 1.0),
    ("VQA", "yes", "yes", {}, 1.0),
    ("VQA", "Yes", "yes", {}, 1.0),
    ("VQA", "YES.", "yes", {}, 1.0),
    ("VQA", "No", "yes", {}, 0.0),
    ("VQA", "Yes, the dog is on the left.", "yes", {}, 1.0),
    ("VQA", "No, wait, yes.", "yes", {}, 0.0),
    ("VQA", "blue", "blue", {}, 1.0),
    ("VQA", "The car is red.", "red", {}, 1.0),
    ("VQA", "a red car", "red car", {}, 1.0),
    ("VQA", "two", "2", {}, 1.0),
    ("VQA", "2", "two", {}, 1.0),
    ("VQA", "3 dogs", "3", {}, 1.0),
    ("VQA", "It is not a circle, it is a square.", "circle", {}, 0.0),
    ("VQA", "circle or square", "circle", {}, 0.0),
    ("VQA", "teal", "blue", {}, 0.0),
    ("VQA", "The shape is a circle.", "circle", {}, 1.0),
    ("VQA", "Nike", "nike", {}, 1.0),
    ("VQA", "left", "right", {}, 0.0),
    ("VQA", "1,234", "1234", {}, 1.0),
    ("VQA", "1 234", "1234", {}, 1.0),
    ("VQA", "1 234", "235", {}, 0.0),  # math-verify alone reads "1 234" as 235
    ("VQA", "$12", "12", {}, 1.0),
    ("VQA", "Answer: teal", "teal", {}, 1.0),
    ("VQA", "I am not sure, maybe blue", "teal", {}, 0.0),
    ("VQA", "<answer>yes</answer>", "yes", {}, 1.0),
    ("VQA", "12 cm", "12", {}, 1.0),
    ("VQA", "The image shows a circle next to a square; the answer is square.", "circle", {}, 0.0),
    ("VQA", "It could be 5 but I think it's 7.", "5", {}, 0.0),
    ("VQA", "cat", "C", {"A": ["dog"], "B": ["bird"], "C": ["cat"], "D": ["fish"]}, 1.0),  # MMBench columns
    ("VQA", "\\boxed{10^{10^{10}}}", "10", {}, 0.0),
]


def _ids():
    seen: Counter[str] = Counter()
    for style, *_ in CASES:
        seen[style] += 1
        yield f"{style}-{seen[style]}"


@pytest.mark.parametrize(("style", "completion", "solution", "extra", "expected"), CASES, ids=list(_ids()))
def test_answer_format(style, completion, solution, extra, expected):
    assert accuracy_reward([completion], [solution], **extra) == [expected], extract_answer(completion)


def test_table_covers_every_benchmark_style():
    counts = Counter(style for style, *_ in CASES)
    assert len(CASES) >= 60
    assert set(counts) == {"MathVista", "MMStar", "MathVerse", "WeMath", "LogicVista", "VQA"}
    assert min(counts.values()) >= 8
    assert sum(1 for *_, expected in CASES if expected == 0.0) >= 20  # the false positives it must not make


def test_options_column_as_string_and_dict():
    assert accuracy_reward(["A"], ["3/11"], choices=['["3/11", "8/11"]']) == [1.0]
    assert accuracy_reward(["(B)"], ["dog"], options=[{"A": "cat", "B": "dog"}]) == [1.0]
    assert accuracy_reward(["(A)"], ["dog"], options=[{"A": "cat", "B": "dog"}]) == [0.0]


def test_conversational_prompt_lists_the_options():
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": MATHVERSE_Q}]}]
    assert accuracy_reward(["the answer is 4"], ["B"], prompts=[prompt]) == [1.0]


def test_option_text_matching_two_options_is_ambiguous():
    assert accuracy_reward(["4.0"], ["B"], choices=[["2", "4", "8/2", "8"]]) == [0.0]
    assert accuracy_reward(["4"], ["B"], choices=[["2", "4", "8/2", "8"]]) == [1.0]  # exactly option B's text


# ---- issue 15: answers that cannot freeze or hog a process ----


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{10^{10^{10}}}",
        "\\boxed{(10^{10})!}",
        "\\boxed{9^{9^{9}}}",
        "The answer is 10^10^10",
        "\\boxed{10**10**10}",
        "\\boxed{10^{10000000000}}",
        "\\boxed{((10^{999})^{999})^{999}}",
        "\\boxed{\\Gamma(10^{10})}",
        "\\boxed{\\binom{10000000000}{5000000000}}",
        "\\boxed{" + "9" * 5000 + "}",
    ],
)
def test_pathological_answers_are_not_evaluated(completion):
    start = time.perf_counter()
    assert accuracy_reward([completion], ["10"]) == [0.0]
    assert time.perf_counter() - start < 2.0


def test_worker_thread_power_tower_does_not_freeze_other_threads():
    """A worker-thread call (no signal timeouts there) returns fast while another thread keeps answering."""
    answered = []
    stop = threading.Event()

    def other_thread():
        while not stop.is_set():
            answered.append(accuracy_reward(["\\boxed{1/2}"], ["0.5"])[0])

    watcher = threading.Thread(target=other_thread)
    watcher.start()
    try:
        results = []
        worker = threading.Thread(
            target=lambda: results.append(accuracy_reward(["\\boxed{10^{10^{10}}}"], ["5"]))
        )
        start = time.perf_counter()
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive() and results == [[0.0]]
        assert time.perf_counter() - start < 5.0
        time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert answered and all(r == 1.0 for r in answered)


@pytest.mark.parametrize("unit", ["\\(", "\\boxed{", "$", "<answer>", "{", "Answer: ", "\\["])
def test_100kb_of_unclosed_delimiters_is_fast(unit):
    text = unit * (100_000 // len(unit))
    start = time.perf_counter()
    accuracy_reward([text], ["1"])
    extract_answer(text)
    assert time.perf_counter() - start < 1.0


def test_scoring_passes_the_rows_columns_to_the_reward(tiny_filter_factory):
    """As TRL does: every other column (here `choices`) and `prompts`, one entry per completion; a function
    without **kwargs gets only what it names."""
    import datasets

    from rap_hf.demo.data import tiny_synthetic

    seen = {}

    def recording(completions, solution, **kwargs):
        seen.update(kwargs)
        return [0.5] * len(completions)

    def fixed(completions, solution):
        return [1.0] * len(completions)

    data = tiny_synthetic(2, seed=5)
    data = data.add_column(
        "choices", [["1", "2"], ["3", "4"]], feature=datasets.List(datasets.Value("string"))
    )
    tiny_filter_factory(recording, num_rollouts=2, max_new_tokens=2, compute_ace=False).score(data)
    assert set(seen) >= {"prompts", "choices", "kind"} and "image" not in seen and "solution" not in seen
    assert seen["choices"] == [["1", "2"], ["1", "2"], ["3", "4"], ["3", "4"]]  # one per completion
    scored = tiny_filter_factory(fixed, num_rollouts=2, max_new_tokens=2, compute_ace=False).score(data)
    assert scored["rap_acc_mm"] == [1.0, 1.0]
