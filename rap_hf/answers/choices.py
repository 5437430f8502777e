"""Multiple choice: the letter an answer stands for, and a row's options.

Letters A-J are accepted in the usual spellings: ``B``, ``(B)``, ``[B]``, ``B.``, ``B)``, ``B:``, ``Option B``,
``choice (b)``, ``\\text{B}``, ``**B**``, and followed by the option's text (``B. 45°``, ``(B) 45°``,
``B: the cat``). A bare "A cat" is not choice A: "A" is too often the article.

A row's options come from a choices/options column (a list, a dict by letter, a JSON or Python list in a
string, or text such as ``"A. 3cm; B. 4cm"``), from MMBench-style columns named ``A``, ``B``, ... or, failing
those, from the question text (``"Choices:\\n(A) 3/11\\n(B) 8/11"``, ``"Options: A: cat, B: dog"``).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rap_hf.answers.text import strip_markdown, strip_math_delims, unwrap_text_commands

LETTERS = "ABCDEFGHIJ"
#: Dataset columns (TRL passes every column to a reward function as a keyword argument) holding the options.
OPTION_COLUMNS = ("choices", "options", "option", "choice_list", "candidates")

# "Option B", "choice (b)", "(B)", "[B]", "B." ... as the whole string.
_FULL_RE = re.compile(r"^\s*(?:(?:option|choice)\s*)?[(\[]?\s*([A-Ja-j])\s*[)\]]?\s*[.:]?\s*$", re.IGNORECASE)
# A choice marker followed by the option's text: "(B) 12", "B. 12", "B) 12", "B: cat", "Option B: cat".
_LEADING_RE = re.compile(
    r"^\s*(?:(?:option|choice)\s*)?(?:[(\[]\s*([A-Ja-j])\s*[)\]]|([A-Ja-j])\s*[.):](?=\s|$))\s*",
    re.IGNORECASE,
)
# "Option B ..." where no punctuation follows the letter: "Option B is correct".
_OPTION_WORD_RE = re.compile(r"^\s*(?:option|choice)\s+\(?([A-Ja-j])\)?(?=\s|$)", re.IGNORECASE)
# Several letters as a ground truth: "A, C", "A and C", "A; C".
_MULTI_RE = re.compile(r"^\s*[(\[]?[A-J][)\]]?(?:\s*(?:,|;|AND|&)\s*[(\[]?[A-J][)\]]?)+\s*$")
# Option markers inside a question: "(A) ...", "A. ...", "A:2", "A) ..." at a line start or after a separator.
_MARKER_RE = re.compile(r"(?:^|(?<=[\s,;]))(?:\(([A-J])\)|([A-J])[.:)])", re.MULTILINE)
_OPTIONS_HEADER_RE = re.compile(r"\b(?:choices|options)\s*:?", re.IGNORECASE)


def _unwrap(s: str) -> str:
    return unwrap_text_commands(strip_math_delims(strip_markdown(s).strip())).strip()


def choice_letter(s: str, allow_leading: bool = True) -> str | None:
    """The upper-case letter ``s`` stands for (``"(b)"``, ``"Option B"``, ``"\\text{B}"``), else None.

    With ``allow_leading``, a marker followed by the option's text (``"B. 45°"``) counts too.
    """
    s = _unwrap(s)
    m = _FULL_RE.match(s)
    if m is None and allow_leading:
        m = _LEADING_RE.match(s) or _OPTION_WORD_RE.match(s)
    if m is None:
        return None
    return next(g for g in m.groups() if g).upper()


def split_choice(s: str) -> tuple[str | None, str]:
    """``(letter, option text)`` of an answer such as ``"B. 45°"``; ``(None, s)`` when it has no marker."""
    u = _unwrap(s)
    m = _FULL_RE.match(u)
    if m:
        return next(g for g in m.groups() if g).upper(), ""
    m = _LEADING_RE.match(u)
    if m:
        return next(g for g in m.groups() if g).upper(), u[m.end() :].strip()
    return None, s


def choice_letters(s: str) -> frozenset[str] | None:
    """The set of letters of a multi-select answer (``"A, C"``, ``"(A) and (C)"``); None if it is not one."""
    u = _unwrap(s).upper()
    if _MULTI_RE.match(u):
        return frozenset(re.findall(r"[A-J]", u.replace("AND", " ")))
    return None


def _strip_own_marker(text: str, index: int) -> str:
    """``"A. 3cm"`` -> ``"3cm"`` when the marker is the option's own letter (WeMath, MathVista spell them so)."""
    letter, rest = split_choice(text)
    return rest if letter == LETTERS[index] and rest else text.strip()


def options_from_text(text: str) -> list[str] | None:
    """Options listed in a question: consecutive markers A, B, C, ... after the last "Choices:"/"Options:"
    header (else anywhere), each option running to the next marker or the end of its line. None if fewer than
    two are found."""
    if not text:
        return None
    headers = list(_OPTIONS_HEADER_RE.finditer(text))
    start = headers[-1].end() if headers else 0
    body = text[start:]
    markers = [(m.start(), m.end(), (m.group(1) or m.group(2))) for m in _MARKER_RE.finditer(body)]
    # Keep the first run A, B, C, ... (a stray "I." or "A:" elsewhere is not an option).
    run: list[tuple[int, int, str]] = []
    for marker in markers:
        if marker[2] == LETTERS[len(run)] if len(run) < len(LETTERS) else False:
            run.append(marker)
        elif run and len(run) >= 2:
            break
        elif marker[2] == "A":
            run = [marker]
    if len(run) < 2:
        return None
    options = []
    for k, (_, end, _) in enumerate(run):
        stop = run[k + 1][0] if k + 1 < len(run) else len(body)
        chunk = body[end:stop]
        if k + 1 == len(run):
            chunk = chunk.split("\n", 1)[0]
        options.append(chunk.strip().rstrip(",;").strip())
    return options


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def parse_options(value: Any) -> list[str] | None:
    """The option texts of one row's choices value, in letter order; None when there are fewer than two.

    Accepts a list/tuple/array of strings, a dict keyed by letter, a JSON or Python list in a string, or
    text with markers (``"A. 3cm; B. 4cm"``). A marker that repeats the option's own letter is removed.
    """
    if _is_missing(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            for loader in (json.loads, ast.literal_eval):
                try:
                    parsed = loader(text)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    continue
                if isinstance(parsed, list):
                    return parse_options(parsed)
        return options_from_text(text)
    if isinstance(value, Mapping):
        items = sorted((str(k).strip().upper(), v) for k, v in value.items() if not _is_missing(v))
        if [k for k, _ in items] != list(LETTERS[: len(items)]):
            return None
        value = [v for _, v in items]
    if hasattr(value, "tolist"):  # numpy array / pyarrow scalar list
        value = value.tolist()
    if not isinstance(value, Sequence) or len(value) < 2:
        return None
    options = [
        _strip_own_marker(str(v), i) for i, v in enumerate(value[: len(LETTERS)]) if not _is_missing(v)
    ]
    return options if len(options) >= 2 else None


def row_options(kwargs: Mapping[str, Any], i: int, prompt_text: str | None = None) -> list[str] | None:
    """The options of completion ``i`` from a reward function's keyword arguments (TRL passes dataset columns
    as lists, one entry per completion): an options column, MMBench-style ``A``/``B``/... columns, else the
    question text."""
    for name in OPTION_COLUMNS:
        column = kwargs.get(name)
        if isinstance(column, Sequence) and not isinstance(column, str) and i < len(column):
            options = parse_options(column[i])
            if options:
                return options
    if isinstance(kwargs.get("A"), Sequence) and isinstance(kwargs.get("B"), Sequence):
        by_letter = {}
        for letter in LETTERS:
            column = kwargs.get(letter)
            if not isinstance(column, Sequence) or i >= len(column) or _is_missing(column[i]):
                break
            by_letter[letter] = column[i]
        options = parse_options(by_letter)
        if options:
            return options
    return options_from_text(prompt_text) if prompt_text else None
