"""Text normalisation shared by answer extraction and comparison.

Every function here is one linear pass (or a fixed number of them) over its input: completions are model
output, and a pathological one must not cost more than reading it.
"""

from __future__ import annotations

import re
import unicodedata

# LaTeX commands whose argument is plain text: \text{circle} is the answer "circle".
_TEXT_COMMAND_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textsf|texttt|textnormal|mathrm|mathbf|mathit|mathsf|mathtt|mbox|"
    r"operatorname)\s*\{"
)
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# Thin spaces and sizing commands that carry no meaning in an answer.
_LATEX_SPACING_RE = re.compile(r"\\[,!;: ]|\\left\b|\\right\b|\\displaystyle\b|~")
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
# Number words that are unambiguous as answers (VQA's own normalisation maps zero..ten).
NUMBER_WORDS = {
    word: str(i)
    for i, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORD_RE = re.compile(r"\b(?:" + "|".join(NUMBER_WORDS) + r")\b")
# Punctuation that may surround an answer without changing it: "Circle.", "'yes'", "**B**".
_SURROUNDING = " \t\r\n.,;:!?\"'`*_()[]{}«»“”‘’。，"
# A degree sign in any spelling, for math-verify (which reads ^\circ but not the Unicode sign).
_DEGREE_RE = re.compile(r"\s*(?:°|\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\degree\b)")


def unwrap_text_commands(s: str) -> str:
    r"""Replace every ``\text{X}``-style command (``\textbf``, ``\mathrm``, ...) by X, nested ones too.

    One left-to-right pass with a stack of open braces: the closing brace of a text command is dropped, every
    other brace is kept. An unclosed command keeps its content.
    """
    if "\\" not in s:
        return s
    out: list[str] = []
    drop_close: list[bool] = []  # per open brace: does it belong to a text command?
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "\\":
            m = _TEXT_COMMAND_RE.match(s, i)
            if m:
                drop_close.append(True)
                i = m.end()
                continue
            out.append(s[i : i + 2])  # an escaped character or the start of another command
            i += 2
            continue
        if ch == "{":
            drop_close.append(False)
            out.append(ch)
        elif ch == "}":
            if not drop_close or not drop_close.pop():
                out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def strip_math_delims(s: str) -> str:
    """``s`` without one pair of surrounding math delimiters (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``)."""
    s = s.strip()
    for left, right in _MATH_DELIMITERS:
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            return s[len(left) : len(s) - len(right)].strip()
    return s


def strip_markdown(s: str) -> str:
    """Drop markdown emphasis and code marks (``**B**``, ``__yes__``, `` `12` ``)."""
    return s.replace("**", "").replace("__", "").replace("`", "")


def clean_answer(s: str) -> str:
    """An answer span as written, tidied: markdown, math delimiters, text commands and surrounding punctuation
    removed (``"**\\text{Circle}.**"`` -> ``"Circle"``). Inner punctuation and case are kept."""
    s = strip_markdown(s).strip()
    s = strip_math_delims(s.strip(" .,;!"))
    s = unwrap_text_commands(s)
    return s.strip(" \t\r\n.,;!。").strip()


def normalize_degrees(s: str) -> str:
    """Write every degree sign as ``^\\circ`` (what math-verify reads): ``45°`` -> ``45^\\circ``."""
    return _DEGREE_RE.sub(r"^\\circ", s)


def normalize_text(s: str) -> str:
    """The loose form two answers are compared in as strings.

    Case, surrounding punctuation, articles (a, an, the), whitespace, markdown, math delimiters, LaTeX text
    commands and spacing are ignored, degree signs are dropped, and the number words zero..twenty become
    digits: ``"The Circle."``, ``"\\text{circle}"`` and ``"circle"`` are all ``"circle"``; ``"Two"`` is ``"2"``.
    """
    s = unicodedata.normalize("NFKC", s)
    s = unwrap_text_commands(strip_math_delims(strip_markdown(s)))
    s = _LATEX_SPACING_RE.sub(" ", s).replace("$", "")
    s = _DEGREE_RE.sub("", s).lower().strip(_SURROUNDING)
    s = _ARTICLES_RE.sub(" ", s)
    s = _NUMBER_WORD_RE.sub(lambda m: NUMBER_WORDS[m.group(0)], s)
    return "".join(s.split()).strip(_SURROUNDING)


def is_word_answer(s: str) -> bool:
    """Whether ``s`` is a word answer ("yes", "red car", "St. Louis"), compared as a string only.

    latex2sympy reads "cat" as the product c*a*t (and would make "act" correct), so a ground truth made of
    letters with at least one word of three or more letters never goes to math-verify.
    """
    s = clean_answer(s)
    return bool(re.fullmatch(r"[^\W\d_][^\W\d_\s'’.\-]*(?:[\s'’.\-]+[^\W\d_]+)*", s)) and (
        re.search(r"[^\W\d_]{3,}", s) is not None
    )
