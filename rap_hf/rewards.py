"""Verifiable rewards r(completion, a*) for the RAP rollouts (docs/method.md §1).

Each rollout is scored against the ground-truth answer a*:

1. the answer is extracted from the completion (:func:`extract_answer`);
2. it is compared with a* (:func:`answers_match`): choice letters as letters, everything else by
   mathematical equivalence with ``math-verify`` (falling back to normalized string equality).

A user-supplied reward function with TRL's signature ``fn(completions, solution, **kwargs) -> list[float]``
can replace :func:`accuracy_reward`; :func:`resolve_reward_fn` and :func:`compute_rewards` validate it so a
bad function fails loudly instead of silently skewing acc_mm / acc_text.

Thread/process safety: ``math_verify`` implements its timeouts with ``signal.alarm``, which Python only
allows in the main thread of the main interpreter. We pass timeouts only when running in the main thread
(which includes each ``datasets.map(num_proc=...)`` worker process) and ``None`` elsewhere, exactly as
TRL's own ``accuracy_reward`` does. Without a timeout a pathological expression could make sympy slow, so
extracted answers longer than :data:`MAX_MATH_ANSWER_CHARS` are only compared as strings.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import numbers
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from math_verify import parse, verify

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_MATH_ANSWER_CHARS",
    "accuracy_reward",
    "answers_match",
    "compute_rewards",
    "extract_answer",
    "is_choice_letter",
    "normalize_solution",
    "resolve_reward_fn",
]

RewardFn = Callable[..., Sequence[Any]]

#: Seconds for math_verify's parse/verify timeouts when we may use them (main thread only).
PARSE_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5
#: Answers longer than this skip sympy (no timeout protects us outside the main thread).
MAX_MATH_ANSWER_CHARS = 1000

_SIGNAL_THREAD_ERROR = "threaded environment"  # substring of math_verify's re-raised ValueError


class _DropTimeoutDisabledWarning(logging.Filter):
    """Drop math_verify's one-off "Timeout is disabled" warning.

    We disable its timeouts on purpose outside the main thread (see module docstring), so the warning is
    noise. A narrow filter instead of raising the logger level (what TRL does) keeps math_verify's other
    warnings, e.g. real parse timeouts, visible.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _DropTimeoutDisabledWarning) for f in _logger.filters):
        _logger.addFilter(_DropTimeoutDisabledWarning())


# --------------------------------------------------------------------------------------------------
# Answer extraction
# --------------------------------------------------------------------------------------------------

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
# "The (final) answer is X", "Answer: X", "**Answer:** X". The last occurrence wins.
_ANSWER_IS_RE = re.compile(
    r"(?:final\s+)?answer\s*(?:is\b\s*[:=]?|[:=])[\s*:]*(?P<rest>[^\n]*)",
    re.IGNORECASE,
)
# A whole string that is a choice letter: "B", "(B)", "[B]", "B.", "B)".
_CHOICE_FULL_RE = re.compile(r"^\s*[(\[]?\s*([A-Ja-j])\s*[)\]]?\s*[.:]?\s*$")
# A string *starting* with an unambiguous choice marker: "(B) 12", "B. 12", "B) 12", "B: cat".
# A bare "A cat" is not accepted: "A" is too often the article.
_CHOICE_LEADING_RE = re.compile(r"^\s*(?:[(\[]\s*([A-Ja-j])\s*[)\]]|([A-Ja-j])\s*[.):](?=\s|$))")
# A choice letter at the very end of the text: "... so the answer is (C)." / "... option B".
# Upper case only: a lone lower-case letter at the end of prose is almost never a choice.
_CHOICE_TRAILING_RE = re.compile(r"(?:^|[^\w\\])[(\[]?([A-J])[)\]]?[.:]?\s*$")
# Inline/display math segments; the last one is used when it ends the text: "... so x = $\frac{1}{2}$."
# (a last-number scan would give 2).
_MATH_SEGMENT_RE = re.compile(r"\$\$(.+?)\$\$|\$([^$]+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
# "The answer is not obvious ..." is reasoning, not an answer.
_NOT_AN_ANSWER_RE = re.compile(r"^(?:not|to|that|because|unclear|obvious|clear)\b", re.IGNORECASE)
# Numbers: ints, decimals, thousands separators, negatives (a "-" right after a word/")" is subtraction),
# and fractions like 3/4.
_NUMBER_RE = re.compile(r"(?:(?<![\w)\]}])-)?\d+(?:,\d{3}(?!\d))*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")
_LATEX_TEXT_WRAPPER_RE = re.compile(r"^\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{(.*)\}$", re.DOTALL)


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` with balanced braces, in order (nested braces are fine).

    A box whose braces never close (a truncated completion) is skipped rather than guessed at.
    """
    out = []
    for m in _BOXED_RE.finditer(text):
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            ch = text[i]
            if ch == "{" and text[i - 1] != "\\":
                depth += 1
            elif ch == "}" and text[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    out.append(text[start:i])
                    break
    return out


def _last_boxed(text: str) -> str | None:
    for content in reversed(_boxed_contents(text)):
        if content.strip():
            return content.strip()
    return None


def _strip_math_delims(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            return s[len(left) : len(s) - len(right)].strip()
    return s


def _choice_letter(s: str, allow_leading: bool = True) -> str | None:
    """The upper-case choice letter ``s`` stands for ("(b)", "B.", "\\text{B}"), else None.

    With ``allow_leading``, a choice marker followed by the option text ("B) 12", "(B) cat") counts too.
    """
    s = _strip_math_delims(s.replace("*", ""))
    while True:  # \text{\textbf{B}} -> B
        m = _LATEX_TEXT_WRAPPER_RE.match(s)
        if not m:
            break
        s = m.group(1).strip()
    m = _CHOICE_FULL_RE.match(s) or (_CHOICE_LEADING_RE.match(s) if allow_leading else None)
    if not m:
        return None
    return next(g for g in m.groups() if g).upper()


def _clean_span(s: str) -> str:
    """Tidy a free-text answer span: drop markdown bold, math delimiters and sentence punctuation."""
    s = s.replace("**", "").strip()
    # End at the first sentence boundary ("42. Because ..."), but keep decimals ("3.5").
    s = re.split(r"\.(?=\s)", s, maxsplit=1)[0]
    s = s.strip().rstrip(".,;!。").strip()
    return _strip_math_delims(s).rstrip(".,;").strip()


def _from_answer_span(span: str) -> str | None:
    """Reduce the text after "answer is" / inside <answer> tags to the answer itself."""
    boxed = _last_boxed(span)
    if boxed is not None:
        return boxed
    matches = list(_ANSWER_IS_RE.finditer(span))
    if matches:
        cleaned = _clean_span(matches[-1].group("rest"))
        if cleaned:
            span = cleaned
    letter = _choice_letter(span)
    if letter is not None:
        return letter
    cleaned = _clean_span(span)
    return cleaned or None


def extract_answer(completion: str) -> str | None:
    """Extract the final answer from a model completion.

    Priority (the first rule that finds something wins; within a rule the *last* occurrence wins, because
    models restate or correct themselves and the final statement is the answer):

    1. ``\\boxed{...}`` (balanced braces, nested ok, e.g. ``\\boxed{\\frac{1}{2}}``);
    2. ``<answer>...</answer>`` (stripped; a ``\\boxed{}`` or "answer is X" inside is unwrapped);
    3. "The answer is X" / "Answer: X" (X up to the end of the line/sentence; a choice marker such as
       "(C)" is reduced to the letter "C");
    4. a choice letter at the very end: "(B)", "B.", "B";
    5. a math segment at the very end (``$...$``, ``\\(...\\)``), whose right-hand side of ``=`` is taken
       (otherwise rule 6 would return the "2" of ``$x = \\frac{1}{2}$``);
    6. the last number: ints, decimals, negatives, thousands separators (removed), fractions like 3/4.

    Returns:
        The answer string, or None when nothing answer-like is found.
    """
    if not isinstance(completion, str) or not completion.strip():
        return None
    text = completion

    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed

    tags = _ANSWER_TAG_RE.findall(text)
    for content in reversed(tags):
        answer = _from_answer_span(content)
        if answer:
            return answer

    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        span = _clean_span(m.group("rest"))
        if span and not _NOT_AN_ANSWER_RE.match(span):
            letter = _choice_letter(span)
            return letter if letter is not None else span

    # Markdown emphasis and math delimiters around a final letter ("**B**", "$B$") are noise here.
    tail = re.sub(r"[*$]", "", text[-200:]).rstrip()
    m = _CHOICE_TRAILING_RE.search(tail)
    if m:
        return m.group(1)

    segments = list(_MATH_SEGMENT_RE.finditer(text))
    if segments and not text[segments[-1].end() :].strip(" \t\n.!"):
        expr = next(g for g in segments[-1].groups() if g is not None).strip()
        expr = expr.rsplit("=", 1)[-1].strip()
        if expr:
            return expr

    numbers_found = _NUMBER_RE.findall(text)
    if numbers_found:
        return re.sub(r"[,\s]", "", numbers_found[-1])
    return None


# --------------------------------------------------------------------------------------------------
# Ground truth and comparison
# --------------------------------------------------------------------------------------------------


def normalize_solution(solution: Any) -> str | None:
    """Turn a dataset's ground-truth answer into a string answer.

    Accepts ``str``, ``int``, ``float`` (and any ``numbers.Number``, e.g. numpy scalars), or a string that
    wraps the answer in ``<answer>...</answer>`` or ``\\boxed{...}`` (the wrapper is removed). Returns None
    for None, empty/whitespace strings and NaN/inf floats: there is nothing to compare against.
    """
    if solution is None:
        return None
    if isinstance(solution, bool):  # bool is an int subclass; "True" is the meaningful answer text
        return str(solution)
    if isinstance(solution, numbers.Integral):
        return str(int(solution))
    if isinstance(solution, numbers.Real) and not isinstance(solution, numbers.Rational):
        value = float(solution)
        if not math.isfinite(value):
            return None
        # repr keeps full precision and gives "12.0" for 12.0; math_verify equates 12.0 and 12.
        return repr(value)
    text = str(solution).strip()
    if not text:
        return None
    tags = _ANSWER_TAG_RE.findall(text)
    if tags:
        text = tags[-1].strip()
    boxed = _last_boxed(text)
    if boxed is not None:
        text = boxed
    text = _strip_math_delims(text)
    return text or None


def is_choice_letter(s: str) -> bool:
    """True for a single choice letter A-J (either case), optionally as "(B)", "[B]", "B.", "B)"."""
    return isinstance(s, str) and _CHOICE_FULL_RE.match(s) is not None


def _normalize_text(s: str) -> str:
    """Loose string form for the fallback comparison: case, spaces, $ and final punctuation ignored."""
    s = _strip_math_delims(s)
    s = re.sub(r"\\[,!;: ]|\\left|\\right", "", s)
    s = re.sub(r"\s+", "", s.replace("$", ""))
    return s.rstrip(".").lower()


def _is_text_answer(s: str) -> bool:
    """Word answers ("yes", "red car") are compared as strings, never symbolically.

    latex2sympy reads "cat" as the product c*a*t, which would make "act" a correct answer.
    """
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z\s'\-]*", s)) and re.search(r"[A-Za-z]{3,}", s) is not None


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


def _math_equal(gold: str, pred: str) -> bool:
    # Wrap in \boxed{} so math_verify parses the whole string as LaTeX: unwrapped, it hunts for the last
    # number-like span in free text and would read "x+1" as 1 (and then accept a gold of 1).
    gold_parsed = _mv_parse(f"\\boxed{{{gold}}}") or _mv_parse(gold)
    if not gold_parsed:
        return False
    if _mv_verify(gold_parsed, _mv_parse(f"\\boxed{{{pred}}}")):
        return True
    # A prose answer ("12 because ...") does not parse as one expression; then let math_verify's own
    # free-text extraction find the expression in it.
    if re.search(r"(?<!\\)\b[A-Za-z]{3,}", pred):
        return _mv_verify(gold_parsed, _mv_parse(pred))
    return False


def answers_match(predicted: str | None, solution: Any) -> bool:
    """Whether an extracted answer equals the ground truth.

    * Choice-letter ground truth ("C", "(c)", "C."): the prediction's choice letter must be the same letter,
      case-insensitively ("(C) 12" and "\\text{C}" count as C).
    * Otherwise: a loose string match first (cheap, and the only test for word answers such as "yes"),
      then mathematical equivalence with ``math_verify.parse`` + ``math_verify.verify`` ("12" == "12.0",
      "1/2" == "0.5" == "\\frac{1}{2}", "x+1" == "1+x"). Any math_verify error or timeout counts as
      "not equivalent" (the string match has already been tried).
    """
    if predicted is None or not isinstance(predicted, str) or not predicted.strip():
        return False
    gold = normalize_solution(solution)
    if gold is None:
        return False
    pred = predicted.strip()

    gold_letter = _choice_letter(gold, allow_leading=False)
    if gold_letter is not None:
        return _choice_letter(pred) == gold_letter

    if _normalize_text(pred) == _normalize_text(gold):
        return True
    if _is_text_answer(gold) or len(pred) > MAX_MATH_ANSWER_CHARS or len(gold) > MAX_MATH_ANSWER_CHARS:
        return False
    try:
        return _math_equal(gold, pred)
    except Exception:  # math_verify/sympy can raise on odd input; a reward must not crash a run
        logger.debug("math_verify failed on gold=%r pred=%r", gold, pred, exc_info=True)
        return False


# --------------------------------------------------------------------------------------------------
# TRL-style reward functions
# --------------------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of parts ``{"type": "text", "text": ...}``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and part.get("text"):
                parts.append(str(part["text"]))
        return "\n".join(parts)
    raise TypeError(f"unsupported message content type {type(content).__name__}")


def _completion_text(completion: Any) -> str:
    """Text of a completion: a plain string, one message dict, or TRL's conversational list of messages.

    For a message list, the assistant messages (or all messages, when none has a role) are joined, so a
    multi-turn completion's final answer (last in the text) is what :func:`extract_answer` finds.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        if not messages:
            return "\n".join(str(m) for m in completion if isinstance(m, str))
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        return "\n".join(_content_text(m.get("content")) for m in (assistant or messages))
    raise TypeError(
        f"unsupported completion type {type(completion).__name__}: expected a string or a list of messages"
    )


def accuracy_reward(completions: list, solution: list, **kwargs: Any) -> list[float]:
    """0/1 accuracy of each completion against its ground truth, with TRL's reward-function signature.

    Args:
        completions: plain strings, or TRL's conversational form
            ``[[{"role": "assistant", "content": "..."}], ...]`` where ``content`` is a string or a list of
            ``{"type": "text", "text": ...}`` parts.
        solution: ground-truth answers, one per completion (str/int/float; see :func:`normalize_solution`).
        **kwargs: ignored; accepted so trainers (e.g. TRL's ``GRPOTrainer``) can pass dataset columns.

    Returns:
        1.0 where the extracted answer matches, else 0.0. A None/empty solution gives 0.0 (unlike TRL's
        ``accuracy_reward``, which returns None to skip the sample: RAP needs a number per rollout).
    """
    if len(completions) != len(solution):
        raise ValueError(
            f"accuracy_reward got {len(completions)} completions but {len(solution)} solutions; "
            "pass one solution per completion"
        )
    rewards = []
    for completion, sol in zip(completions, solution, strict=True):
        text = _completion_text(completion)
        try:
            correct = answers_match(extract_answer(text), sol)
        except Exception:  # defensive: one odd sample must not abort a scoring run of thousands
            logger.warning("reward computation failed; scoring 0.0", exc_info=True)
            correct = False
        rewards.append(1.0 if correct else 0.0)
    return rewards


def _import_reward_fn(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(
            f"reward function {spec!r} is not an import path; use 'package.module:function' "
            "(or 'accuracy' for the built-in reward)"
        )
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import reward function {spec!r}: {e}") from e
    return obj


def resolve_reward_fn(reward_fn: RewardFn | str | None = None) -> RewardFn:
    """Return the reward function to score rollouts with.

    Args:
        reward_fn: None (or "accuracy") for :func:`accuracy_reward`; a callable with TRL's signature
            ``fn(completions, solution, **kwargs) -> list[float]``; or an import path
            "package.module:function" (handy in YAML/CLI configs).

    Raises:
        TypeError: if it is not callable or cannot be called as ``fn(completions=..., solution=...)``.
        ValueError: if an import path cannot be imported.
    """
    if reward_fn is None:
        return accuracy_reward
    if isinstance(reward_fn, str):
        if reward_fn.strip() in ("accuracy", "accuracy_reward"):
            return accuracy_reward
        reward_fn = _import_reward_fn(reward_fn.strip())
    if not callable(reward_fn):
        raise TypeError(
            f"reward_fn must be callable as fn(completions, solution, **kwargs) -> list[float], "
            f"got {type(reward_fn).__name__}"
        )
    # Check the signature now, so a wrong function fails before hours of generation, not after.
    try:
        sig = inspect.signature(reward_fn)
    except (TypeError, ValueError):  # some builtins/C callables have no introspectable signature
        return reward_fn
    try:
        sig.bind(completions=[], solution=[])
    except TypeError as e:
        raise TypeError(
            f"reward_fn {getattr(reward_fn, '__name__', reward_fn)!r} must accept the keyword arguments "
            f"`completions` and `solution` (TRL's signature fn(completions, solution, **kwargs)): {e}"
        ) from e
    return reward_fn


def compute_rewards(
    reward_fn: RewardFn | str | None, completions: list, solutions: list, **kwargs: Any
) -> list[float]:
    """Call ``reward_fn(completions=..., solution=..., **kwargs)`` and validate what it returns.

    ``reward_fn`` None or a string is first resolved with :func:`resolve_reward_fn`. The function is called
    with keywords, as TRL's trainers do, so both ``fn(completions, solution, **kw)``
    and ``fn(completions, **kwargs)`` (reading ``kwargs["solution"]``) work.

    Returns:
        One finite float per completion, in [0, 1]. ``None`` entries (TRL's "not applicable") become 0.0;
        values outside [0, 1] are clipped with a warning, since acc_mm/acc_text are mean rewards in [0, 1].

    Raises:
        ValueError: if ``completions`` and ``solutions`` differ in length, or the function returns a
            non-sequence, a sequence of the wrong length, non-numeric values, or NaN/inf.
    """
    if len(completions) != len(solutions):
        raise ValueError(f"got {len(completions)} completions but {len(solutions)} solutions")
    if reward_fn is None or isinstance(reward_fn, str):
        reward_fn = resolve_reward_fn(reward_fn)
    name = getattr(reward_fn, "__name__", type(reward_fn).__name__)
    result = reward_fn(completions=completions, solution=solutions, **kwargs)
    if hasattr(result, "tolist"):  # numpy array / torch tensor
        result = result.tolist()
    if isinstance(result, (str, bytes, dict)) or not isinstance(result, Sequence):
        raise ValueError(
            f"reward function {name!r} must return a list of floats, got {type(result).__name__}"
        )
    if len(result) != len(completions):
        raise ValueError(
            f"reward function {name!r} returned {len(result)} rewards for {len(completions)} completions"
        )
    rewards = []
    clipped = 0
    for i, value in enumerate(result):
        if value is None:
            rewards.append(0.0)
            continue
        if hasattr(value, "item") and not isinstance(value, numbers.Number):  # 0-d tensor
            value = value.item()
        if not isinstance(value, numbers.Real):
            raise ValueError(
                f"reward function {name!r} returned a non-numeric reward at index {i}: {value!r} "
                f"({type(value).__name__})"
            )
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"reward function {name!r} returned a non-finite reward at index {i}: {value}")
        if not 0.0 <= value <= 1.0:
            clipped += 1
            value = min(max(value, 0.0), 1.0)
        rewards.append(value)
    if clipped:
        logger.warning("reward function %r returned %d reward(s) outside [0, 1]; clipped", name, clipped)
    return rewards


def reward_fn_name(fn: Any) -> str:
    """A stable name for a reward function (module + qualified name), for fingerprints and metadata."""
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
