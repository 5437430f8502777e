"""Verifiable rewards r(completion, a*) for the RAP rollouts (docs/method.md §1, docs/rewards.md).

Each rollout is scored against the ground-truth answer a*:

1. the answer is extracted from the completion (:func:`extract_answer`, the cascade of
   `rap_hf.answers.extract`: boxes, ``<answer>`` tags, "the answer is", terse answers, choice letters, math
   segments, numbers);
2. it is compared with a* (:func:`answers_match`, `rap_hf.answers.matching`): choice letters as letters or by
   their option's text, words as normalised strings, everything else by mathematical equivalence with
   ``math-verify``.

:func:`accuracy_reward` has TRL's reward signature. It reads a row's options from the keyword arguments TRL
passes (every dataset column, e.g. ``choices``/``options``, and ``prompts``), so a ground truth given as option
text matches a predicted letter and the other way round.

A user-supplied reward function with TRL's signature ``fn(completions, solution, **kwargs) -> list[float]``
can replace :func:`accuracy_reward`; :func:`resolve_reward_fn` and :func:`compute_rewards` validate it so a
bad function fails loudly instead of silently skewing acc_mm / acc_text.

Thread/process safety: extraction is linear in the length of a completion, and no expression reaches sympy
before `rap_hf.answers.guard.is_safe_math` has accepted it (no power towers, huge factorials or literals),
because math-verify's timeouts (``signal.alarm``) only work in the main thread. In the main thread (which
includes each ``datasets.map(num_proc=...)`` worker process) the timeouts are on as well.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

from rap_hf.answers.choices import row_options
from rap_hf.answers.extract import extract_answer, last_answer_tag, last_boxed
from rap_hf.answers.guard import MAX_MATH_CHARS
from rap_hf.answers.matching import PARSE_TIMEOUT_S, VERIFY_TIMEOUT_S, match
from rap_hf.answers.text import strip_math_delims

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_MATH_ANSWER_CHARS",
    "PARSE_TIMEOUT_S",
    "VERIFY_TIMEOUT_S",
    "accuracy_reward",
    "answers_match",
    "compute_rewards",
    "extract_answer",
    "is_choice_letter",
    "normalize_solution",
    "resolve_reward_fn",
    "reward_fn_name",
]

RewardFn = Callable[..., Sequence[Any]]

#: Answers longer than this are compared as strings only (they never reach sympy).
MAX_MATH_ANSWER_CHARS = MAX_MATH_CHARS


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
    tag = last_answer_tag(text)
    if tag is not None and tag.strip():
        text = tag.strip()
    boxed = last_boxed(text)
    if boxed is not None:
        text = boxed
    text = strip_math_delims(text)
    return text or None


_BARE_LETTER_RE = re.compile(r"^\s*[(\[]?\s*[A-Ja-j]\s*[)\]]?\s*[.:]?\s*$")


def is_choice_letter(s: str) -> bool:
    """True for a single choice letter A-J (either case), optionally as "(B)", "[B]", "B.", "B)"."""
    return isinstance(s, str) and _BARE_LETTER_RE.match(s) is not None


def answers_match(predicted: str | None, solution: Any, options: Sequence[str] | None = None) -> bool:
    """Whether an extracted answer equals the ground truth (the rules: `rap_hf.answers.matching`).

    * Choice-letter ground truth ("C", "(c)", "C.", "C. 45°"): the prediction's choice letter must be the same
      letter ("(C) 12" and "\\text{C}" count as C); a predicted text must be that option's text and no other's.
    * Option-text ground truth with ``options`` (the row's option texts in letter order): a predicted letter
      stands for its option.
    * Otherwise: normalised strings (case, punctuation, articles, whitespace, number words), then mathematical
      equivalence with ``math_verify`` ("12" == "12.0", "1/2" == "0.5" == "\\frac{1}{2}", "x+1" == "1+x",
      "25%" == "0.25", "12 cm" == "12") unless the ground truth is a word answer. Any math_verify error or
      timeout counts as "not equivalent".
    """
    if predicted is None or not isinstance(predicted, str) or not predicted.strip():
        return False
    gold = normalize_solution(solution)
    if gold is None:
        return False
    try:
        return match(predicted, gold, options)
    except Exception:  # defensive: an odd answer must not abort a scoring run of thousands
        logger.debug("answer comparison failed on gold=%r pred=%r", gold, predicted, exc_info=True)
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


def _prompt_text(prompt: Any) -> str:
    """The text of a prompt as TRL passes it (``prompts``): a string or a list of chat messages."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "\n".join(
            _content_text(m.get("content"))
            for m in prompt
            if isinstance(m, dict) and m.get("role") != "system"
        )
    return ""


def accuracy_reward(completions: list, solution: list, **kwargs: Any) -> list[float]:
    """0/1 accuracy of each completion against its ground truth, with TRL's reward-function signature.

    Args:
        completions: plain strings, or TRL's conversational form
            ``[[{"role": "assistant", "content": "..."}], ...]`` where ``content`` is a string or a list of
            ``{"type": "text", "text": ...}`` parts.
        solution: ground-truth answers, one per completion (str/int/float; see :func:`normalize_solution`).
        **kwargs: the other dataset columns, one entry per completion, as TRL's ``GRPOTrainer`` (and RAP's
            scoring) pass them. A choices/options column (``choices``, ``options``, ``option``; a list, a
            dict by letter, or text such as ``"A. 3cm; B. 4cm"``) or MMBench-style ``A``/``B``/... columns give
            the row's options; without them the options are read from ``prompts`` when the question lists
            them. Everything else is ignored.

    Returns:
        1.0 where the extracted answer matches, else 0.0. A None/empty solution gives 0.0 (unlike TRL's
        ``accuracy_reward``, which returns None to skip the sample: RAP needs a number per rollout).
    """
    if len(completions) != len(solution):
        raise ValueError(
            f"accuracy_reward got {len(completions)} completions but {len(solution)} solutions; "
            "pass one solution per completion"
        )
    prompts = kwargs.get("prompts")
    rewards = []
    for i, (completion, sol) in enumerate(zip(completions, solution, strict=True)):
        text = _completion_text(completion)
        try:
            prompt = prompts[i] if isinstance(prompts, Sequence) and i < len(prompts) else None
            options = row_options(kwargs, i, _prompt_text(prompt) if prompt is not None else None)
            correct = answers_match(extract_answer(text, options), sol, options)
        except Exception:  # defensive: one odd sample must not abort a scoring run of thousands
            logger.warning("reward computation failed; scoring 0.0", exc_info=True)
            correct = False
        rewards.append(1.0 if correct else 0.0)
    return rewards


# Bumped whenever accuracy_reward scores some completion differently (part of scoring fingerprints). 2: the
# answer formats of docs/rewards.md, options from the row's columns.
accuracy_reward.rap_reward_version = 2  # type: ignore[attr-defined]


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


def accepted_kwargs(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``fn`` can take: all of them for a function with ``**kwargs`` (TRL's signature),
    else only the ones it names. Scoring passes the dataset's columns as TRL does, and a user function written
    as ``fn(completions, solution)`` must not fail on them."""
    if not kwargs:
        return kwargs
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: pass everything, as TRL would
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return kwargs
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in kwargs.items() if k in names}


def compute_rewards(
    reward_fn: RewardFn | str | None, completions: list, solutions: list, **kwargs: Any
) -> list[float]:
    """Call ``reward_fn(completions=..., solution=..., **kwargs)`` and validate what it returns.

    ``reward_fn`` None or a string is first resolved with :func:`resolve_reward_fn`. The function is called
    with keywords, as TRL's trainers do, so both ``fn(completions, solution, **kw)``
    and ``fn(completions, **kwargs)`` (reading ``kwargs["solution"]``) work. ``kwargs`` (e.g. the dataset's
    other columns) reach a function with ``**kwargs`` in full, and others only by the names they declare
    (:func:`accepted_kwargs`).

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
    result = reward_fn(completions=completions, solution=solutions, **accepted_kwargs(reward_fn, kwargs))
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
    """A stable name for a reward function (module + qualified name, and its ``rap_reward_version`` when it has
    one), for fingerprints and metadata: scores from an older version of a reward are not resumed into."""
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    version = getattr(fn, "rap_reward_version", None)
    return f"{name}@v{version}" if version is not None else name
