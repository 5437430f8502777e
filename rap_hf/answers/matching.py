"""Comparing an extracted answer with the ground truth (docs/rewards.md#comparison).

* Ground truth given as a choice letter (``"B"``, ``"(B)"``) or as letter and option (``"B. 45°"``): a
  predicted letter must be that letter; a predicted text must equal that option's text (from the ground
  truth itself or the row's options) and no other option.
* Ground truth given as text while the row has options (MathVista gives the option text): a predicted letter
  is read as its option's text.
* Several letters (``"A, C"``): the predicted letters must be the same set.
* Otherwise: equal as normalised strings (`rap_hf.answers.text.normalize_text`); then, unless the ground truth
  is a word answer, mathematically equivalent under math-verify (units, percentages, fractions, LaTeX), for
  expressions `rap_hf.answers.guard.is_safe_math` lets through.

math-verify's timeouts use ``signal.alarm``, which only works in the main thread: timeouts are passed there and
off elsewhere (TRL does the same); the guard is what keeps other threads safe.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

from math_verify import parse, verify

from rap_hf.answers.choices import LETTERS, choice_letter, choice_letters, split_choice
from rap_hf.answers.guard import is_safe_math
from rap_hf.answers.text import is_word_answer, normalize_degrees, normalize_text, unwrap_text_commands

logger = logging.getLogger(__name__)

#: Seconds for math_verify's parse/verify timeouts when we may use them (main thread only).
PARSE_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5
_SIGNAL_THREAD_ERROR = "threaded environment"  # substring of math_verify's re-raised ValueError
_PROSE_RE = re.compile(r"(?<!\\)\b[^\W\d_]{3,}")
_SPACED_DIGITS_RE = re.compile(r"\d\s+\d")
_THOUSANDS_SPACED_RE = re.compile(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?")


def _timeouts() -> tuple[int | None, int | None]:
    """math_verify's (parsing_timeout, timeout_seconds): signal.alarm only works in the main thread."""
    if threading.current_thread() is threading.main_thread():
        return PARSE_TIMEOUT_S, VERIFY_TIMEOUT_S
    return None, None


def _mv_parse(text: str) -> list:
    parsing_timeout, _ = _timeouts()
    try:
        return parse(text, parsing_timeout=parsing_timeout)
    except ValueError as e:
        # Main thread of a sub-interpreter, or another signal-hostile host: retry without the alarm.
        if _SIGNAL_THREAD_ERROR in str(e) and parsing_timeout is not None:
            return parse(text, parsing_timeout=None)
        raise


def _mv_verify(gold: list, pred: list) -> bool:
    _, verify_timeout = _timeouts()
    try:
        return bool(verify(gold, pred, timeout_seconds=verify_timeout))
    except ValueError as e:
        if _SIGNAL_THREAD_ERROR in str(e) and verify_timeout is not None:
            return bool(verify(gold, pred, timeout_seconds=None))
        raise


def _spaced_digits(s: str) -> str | None:
    """Digits separated by spaces: "1 234" is a thousands separator (-> "1234"); any other "3 4" is ambiguous
    (None: not compared as math; latex2sympy would read "1 234" as 235)."""
    if not _SPACED_DIGITS_RE.search(s):
        return s
    stripped = s.strip()
    return stripped.replace(" ", "") if _THOUSANDS_SPACED_RE.fullmatch(stripped) else None


def math_equal(gold: str, pred: str) -> bool:
    """math-verify equivalence of two answer strings; False for anything the guard refuses."""
    gold, pred = _spaced_digits(normalize_degrees(gold)), _spaced_digits(normalize_degrees(pred))
    if gold is None or pred is None or not (is_safe_math(gold) and is_safe_math(pred)):
        return False
    # Wrap in \boxed{} so math_verify parses the whole string as LaTeX: unwrapped, it hunts for the last
    # number-like span in free text and would read "x+1" as 1 (and then accept a gold of 1).
    gold_parsed = _mv_parse(f"\\boxed{{{gold}}}") or _mv_parse(gold)
    if not gold_parsed:
        return False
    if _mv_verify(gold_parsed, _mv_parse(f"\\boxed{{{pred}}}")):
        return True
    # A prose answer ("12 because ...") does not parse as one expression; then let math_verify's own
    # free-text extraction find the expression in it.
    if _PROSE_RE.search(pred):
        return _mv_verify(gold_parsed, _mv_parse(pred))
    return False


def values_equal(pred: str, gold: str) -> bool:
    """Two answer texts (no choice logic): normalised strings, then math-verify unless gold is a word answer."""
    if not pred.strip() or not gold.strip():
        return False
    if normalize_text(pred) == normalize_text(gold):
        return True
    if is_word_answer(gold):
        return False
    try:
        return math_equal(unwrap_text_commands(gold), unwrap_text_commands(pred))
    except Exception:  # math_verify/sympy can raise on odd input; a reward must not crash a run
        logger.debug("math_verify failed on gold=%r pred=%r", gold, pred, exc_info=True)
        return False


def _option(options: Sequence[str] | None, letter: str) -> str | None:
    index = LETTERS.index(letter)
    return options[index] if options is not None and index < len(options) else None


def _text_matches_option(pred: str, options: Sequence[str] | None, letter: str, text: str) -> bool:
    """``pred`` (a text answer) equals the option ``letter`` (whose text is ``text``) and no other option."""
    if not values_equal(pred, text):
        return False
    others = [o for k, o in enumerate(options or ()) if LETTERS[k] != letter]
    return not any(values_equal(pred, other) for other in others)


def match(predicted: str, gold: str, options: Sequence[str] | None = None) -> bool:
    """Whether the extracted answer ``predicted`` equals the normalised ground truth ``gold`` (see module
    docstring); ``options`` are the row's option texts in letter order, when it has them."""
    pred = predicted.strip()
    gold_letters = choice_letters(gold)
    if gold_letters is not None:
        pred_letters = choice_letters(pred)
        if pred_letters is None:
            single = choice_letter(pred, allow_leading=False)
            pred_letters = frozenset(single) if single else None
        return pred_letters == gold_letters

    gold_letter, gold_text = split_choice(gold)
    if gold_letter is not None:
        pred_letter = choice_letter(pred)
        if pred_letter is not None:
            return pred_letter == gold_letter
        text = gold_text or _option(options, gold_letter)
        return text is not None and _text_matches_option(pred, options, gold_letter, text)

    pred_letter, pred_text = split_choice(pred)
    if pred_letter is not None and options:
        option = _option(options, pred_letter)
        return option is not None and values_equal(option, gold)
    if pred_letter is not None and pred_text:
        return values_equal(pred_text, gold)  # "B. 45°" without options: its text is the answer
    return values_equal(pred, gold)
