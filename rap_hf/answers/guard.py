"""Which expressions are safe to hand to sympy (through math-verify).

sympy evaluates integer powers and factorials eagerly, in C, while holding the GIL: ``10^{10^{10}}`` builds a
ten-billion-digit integer and freezes every thread of the process, and math-verify's timeouts (``signal.alarm``)
only work in the main thread. So an answer is checked *before* it is parsed: no power towers, no exponent
literal above 4 digits, a bounded product of exponents, factorials and binomials of small literals only, no
Gamma function, no literal above `MAX_DIGITS` digits, and a bounded length. An expression that fails the check
is still compared as a string; it is never evaluated.

The check is one pass over the string plus one brace match per ``^``; it never raises.
"""

from __future__ import annotations

import re

#: Longer strings are compared as strings only (sympy's parse time grows with the length).
MAX_MATH_CHARS = 400
#: The longest integer literal sent to sympy.
MAX_DIGITS = 40
#: The longest integer literal inside an exponent (10^{9999} is 10,000 digits: instant).
MAX_EXPONENT_DIGITS = 4
#: Bound on the product of all literal exponents: ((10^{30})^{99})^{99} is fine, nested big powers are not.
MAX_EXPONENT_PRODUCT = 1_000_000
#: The largest literal a factorial or binomial may take.
MAX_FACTORIAL_ARGUMENT = 1000

_DIGIT_RUN_RE = re.compile(r"\d+")
_FORBIDDEN_RE = re.compile(r"\\Gamma|\bgamma\b|factorial|\\operatorname\s*\{\s*(?:fact|gamma)", re.IGNORECASE)
_BINOMIAL_RE = re.compile(r"\\[dt]?binom|\\choose")
_LITERAL_BEFORE_BANG_RE = re.compile(r"(?<![\d.])(\d{1,4})\s*$")
# One exponent token when no brace follows "^": a digit run, a command, or a single character.
_TOKEN_RE = re.compile(r"\d+|\\[A-Za-z]+|.", re.DOTALL)


def _group_end(s: str, start: int) -> int:
    """Index just past the brace/paren group opening at ``s[start]`` (or len(s) if it never closes)."""
    opening = s[start]
    closing = "}" if opening == "{" else ")"
    depth = 0
    for i in range(start, len(s)):
        if s[i] == opening:
            depth += 1
        elif s[i] == closing:
            depth -= 1
            if depth == 0:
                return i + 1
    return len(s)


def _exponent(s: str, caret: int) -> tuple[str, int]:
    """The exponent after the ``^`` at ``caret`` (a group, a digit run, a command or one character) and the
    index just past it."""
    i = caret + 1
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] in "{(":
        end = _group_end(s, i)
        return s[i + 1 : end - 1], end
    m = _TOKEN_RE.match(s, i)
    assert m is not None  # "." matches any character
    return m.group(0), m.end()


def is_safe_math(expr: str) -> bool:
    """Whether sympy may parse and evaluate ``expr`` without building a gigantic number (see module docstring)."""
    if len(expr) > MAX_MATH_CHARS:
        return False
    s = expr.replace("**", "^")
    if _FORBIDDEN_RE.search(s):
        return False
    if any(len(run) > MAX_DIGITS for run in _DIGIT_RUN_RE.findall(s)):
        return False
    if _BINOMIAL_RE.search(s) and any(int(run) > MAX_FACTORIAL_ARGUMENT for run in _DIGIT_RUN_RE.findall(s)):
        return False
    for i, ch in enumerate(s):
        if ch != "!" or (i > 0 and s[i - 1] == "\\") or s[i + 1 : i + 2] == "=":
            continue  # "\!" is a LaTeX thin space, "!=" is "not equal"
        m = _LITERAL_BEFORE_BANG_RE.search(s[max(0, i - 8) : i])
        if m is None or int(m.group(1)) > MAX_FACTORIAL_ARGUMENT:
            return False  # (10^{10})!, n!, 99999!: not evaluated
    product = 1
    for caret in (i for i, ch in enumerate(s) if ch == "^"):
        exponent, end = _exponent(s, caret)
        if "^" in exponent or "!" in exponent or _BINOMIAL_RE.search(exponent):
            return False  # a tower: 10^{10^{10}}, 9^{9^{9}}
        if s[end : end + 1] == "^" or s[end : end + 2] == " ^":
            return False  # 10^10^10 without braces
        runs = _DIGIT_RUN_RE.findall(exponent)
        if any(len(run) > MAX_EXPONENT_DIGITS for run in runs):
            return False
        product *= max([int(run) for run in runs] + [1])
        if product > MAX_EXPONENT_PRODUCT:
            return False
    return True
