"""The answer extraction cascade (docs/rewards.md): the first rule that finds something wins.

0. with the row's options: a completion that is exactly one option's text is that option's letter;
1. the last non-empty ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces, nested ok);
2. the last ``<answer>...</answer>`` (an unclosed final tag runs to the end), reduced by rules 1, 3, 5;
3. an anchored phrase, last occurrence: "the (final/correct) answer is X", "Answer: X", "the correct option
   is X"; X runs to the end of its sentence or clause, and a span such as "not clear" or "either A or B" is
   not an answer. Then a stated choice: "I choose option C", "I'd pick (B)";
4. a short completion opening with yes/no ("Yes, it is.") and not contradicting itself;
5. a short completion that is a choice marker, alone or before its option ("B", "(B) 45°", "Option B");
6. a choice letter that ends the text after a cue ("I choose (B)", "so option C", "... is **A**", "B" on
   its own last line);
7. a short completion, whole: at most five words without a number mixed in ("circle", "red car",
   "x+1", "12 cm"), or the predicate of a one-sentence copula ("The shape is a circle." -> "a circle");
8. a math segment that ends the text (``$...$``, ``\\(...\\)``, ``\\[...\\]``), right-hand side of its last ``=``;
9. the last number (ints, decimals, negatives, thousands separators removed, fractions such as 3/4).

Every rule is linear in the length of the text, and only the last `MAX_SCAN_CHARS` characters of a completion
are read (the final answer comes last): 100 KB of unclosed ``\\(`` or ``\\boxed{`` costs one pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rap_hf.answers.choices import LETTERS, choice_letter
from rap_hf.answers.text import clean_answer, normalize_text, strip_markdown

#: Only this many trailing characters of a completion are scanned.
MAX_SCAN_CHARS = 16_384
#: A completion of at most this many words (one line) is a "short" answer (rules 4, 5 and 7).
MAX_SHORT_WORDS = 12
#: Rule 7 takes a short completion whole only up to this many words.
MAX_WHOLE_WORDS = 5
#: Rule 4 reads a yes/no opener in completions of up to this many words.
MAX_YES_NO_WORDS = 40

_BOX_OPEN_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANCHOR_RE = re.compile(
    r"(?:\b(?:final|correct|right)\s+)?\b(?:answer|option|choice)\s*"
    r"(?:(?:is(?!n['’]t)|would\s+be|should\s+be|will\s+be)\b\s*[:=]?|[:=])[\s*:]*(?P<rest>[^\n]*)",
    re.IGNORECASE,
)
# What follows "the answer is" when it is reasoning, not an answer.
_NOT_AN_ANSWER_RE = re.compile(
    r"^(?:not|to|that|because|unclear|obvious|clear|either|unknown|cannot|can't|impossible|ambiguous|one of|"
    r"given|as follows|below|above|shown|determined|found|calculated|based)\b",
    re.IGNORECASE,
)
# Where an anchored answer ends: a sentence boundary ("42. Because"), or a clause that qualifies it
# ("5, not 3", "yes, because ...").
_SENTENCE_END_RE = re.compile(r"(?<!\d)\.(?=\s|$)|\.(?=\s+[A-Z])|[!?;](?=\s|$)|。")
_CLAUSE_RE = re.compile(
    r",\s*(?:because|since|as|which|so|but|and|not|rather|instead|while|whereas|though|although)\b"
    r"|\s+(?:because|since|rather\s+than|instead\s+of|not)\b",
    re.IGNORECASE,
)
_YES_NO_RE = re.compile(r"^(yes|no)\b(?=\s*(?:[.,!;:]|$))", re.IGNORECASE)
_YES_NO_WORD_RE = re.compile(r"\b(?:yes|no)\b", re.IGNORECASE)
# A letter ending the text after a cue word, in parentheses/brackets, or alone on the last line.
_TRAILING_CUES = r"\b(?i:option|choice|answer|is|choose|select|pick|be|so|thus|therefore|hence|with)|:"
_TRAILING_CHOICE_RE = re.compile(
    rf"(?:(?:{_TRAILING_CUES})\s*[(\[]?\s*([A-J])\s*[)\]]?"
    r"|[(\[]\s*([A-Ja-j])\s*[)\]]"
    r"|(?:^|\n)\s*([A-J])\b)"
    r"\s*[.:!]?\s*$"
)
# "I choose option C because ...", "I'd pick (B)": a choice stated anywhere (the last one counts).
_CHOSEN_RE = re.compile(
    r"\b(?i:choose|select|pick|go\s+with)\s+(?:(?i:option|choice)\s+)?[(\[]?([A-J])[)\]]?(?![\w'’])"
)
_COPULA_RE = re.compile(r"\b(?:is|are|was|were)\s+", re.IGNORECASE)
# A word of two or more letters that is not a LaTeX command ("so", "cm", "apples"): marks prose, as opposed
# to math ("x+1", "2\sqrt{3}", "x = 2").
_PROSE_WORD_RE = re.compile(r"(?<![\\\w])[^\W\d_]{2,}(?!\w)")
# Numbers: ints, decimals, thousands separators, negatives (a "-" right after a word/")" is subtraction),
# and fractions like 3/4.
_NUMBER_RE = re.compile(r"(?:(?<![\w)\]}])-)?\d+(?:,\d{3}(?!\d))*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")
# Up to three unit words after a final math segment.
_TRAILING_WORDS_RE = re.compile(r"(?<=[$)\]])(?:\s+[^\W\d_]{1,12}){1,3}$")
_MATH_SEGMENTS = (("$$", "$$"), ("\\)", "\\("), ("\\]", "\\["), ("$", "$"))


# ------------------------------------------------------------------------------------------------ boxes


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` whose braces close, in the order the boxes open.

    One pass with a stack of open braces: an unclosed box (a truncated completion) is skipped rather than
    guessed at, and costs nothing extra.
    """
    box_braces = {m.end() - 1 for m in _BOX_OPEN_RE.finditer(text)}
    found: list[tuple[int, str]] = []
    stack: list[tuple[int, bool]] = []  # (content start, opens a box)
    for i, ch in enumerate(text):
        if ch not in "{}" or (i > 0 and text[i - 1] == "\\"):
            continue
        if ch == "{":
            stack.append((i + 1, i in box_braces))
        elif stack:
            start, is_box = stack.pop()
            if is_box:
                found.append((start, text[start:i]))
    found.sort()
    return [content for _, content in found]


def last_boxed(text: str) -> str | None:
    """The last non-empty box content, stripped; None if there is none."""
    if "box" not in text:
        return None
    for content in reversed(boxed_contents(text)):
        if content.strip():
            return content.strip()
    return None


# ------------------------------------------------------------------------------------------------ rules


def last_answer_tag(text: str) -> str | None:
    """Content of the last non-empty ``<answer>`` tag (found with rfind: linear); an unclosed last tag runs to
    the end of the text."""
    lower = text.lower()
    last_open = lower.rfind("<answer>")
    if last_open != -1 and lower.find("</answer>", last_open) == -1:
        content = text[last_open + len("<answer>") :]
        if content.strip():
            return content
        lower, text = lower[:last_open], text[:last_open]
    end = lower.rfind("</answer>")
    while end != -1:
        start = lower.rfind("<answer>", 0, end)
        if start == -1:
            return None
        content = text[start + len("<answer>") : end]
        if content.strip():
            return content
        end = lower.rfind("</answer>", 0, start)
    return None


def _anchored_span(span: str) -> str | None:
    """The answer in the text after "answer is": up to its sentence end or qualifying clause, cleaned."""
    span = strip_markdown(span).strip()
    boxed = last_boxed(span)
    if boxed is not None:
        return boxed
    letter = choice_letter(span)
    if letter is not None:
        return letter
    m = _SENTENCE_END_RE.search(span)
    if m:
        span = span[: m.start()]
    m = _CLAUSE_RE.search(span)
    if m and m.start() > 0:
        span = span[: m.start()]
    span = clean_answer(span)
    if not span or _NOT_AN_ANSWER_RE.match(span):
        return None
    letter = choice_letter(span)
    return letter if letter is not None else span


def _anchored(text: str) -> str | None:
    for m in reversed(list(_ANCHOR_RE.finditer(text))):
        answer = _anchored_span(m.group("rest"))
        if answer:
            return answer
    chosen = list(_CHOSEN_RE.finditer(text))
    return chosen[-1].group(1) if chosen else None


def _reduce_tag(content: str) -> str | None:
    boxed = last_boxed(content)
    if boxed is not None:
        return boxed
    anchored = _anchored(content)
    if anchored is not None:
        return anchored
    letter = choice_letter(content)
    if letter is not None:
        return letter
    return clean_answer(content) or None


def _short(text: str) -> tuple[str, int] | None:
    """The text as a short answer (one line, cleaned) and its word count; None if it is not short."""
    stripped = strip_markdown(text).strip()
    if "\n" in stripped:
        return None
    words = len(stripped.split())
    return (stripped, words) if 0 < words <= MAX_SHORT_WORDS else None


def _yes_no(text: str) -> str | None:
    stripped = strip_markdown(text).strip()
    m = _YES_NO_RE.match(stripped)
    if m is None or len(stripped.split()) > MAX_YES_NO_WORDS:
        return None
    if len(_YES_NO_WORD_RE.findall(stripped)) > 1:
        return None  # "No, wait... yes": it contradicts itself
    return m.group(1).lower()


def _one_sentence(s: str) -> bool:
    return _SENTENCE_END_RE.search(s.rstrip(".!? ")) is None


def _is_math_like(s: str) -> bool:
    return _PROSE_WORD_RE.search(s) is None


def _whole_short_answer(short: str, words: int) -> str | None:
    """Rule 7: the whole short answer, or a copula's predicate."""
    if not _one_sentence(short):
        return None
    has_digit = any(ch.isdigit() for ch in short)
    if words <= MAX_WHOLE_WORDS and (not has_digit or _is_math_like(short)) and not _COPULA_RE.search(short):
        return clean_answer(short) or None
    copulas = list(_COPULA_RE.finditer(short))
    if copulas:
        predicate = clean_answer(short[copulas[-1].end() :])
        if predicate and not any(ch.isdigit() for ch in predicate) and not _NOT_AN_ANSWER_RE.match(predicate):
            return predicate
    return None


def _trailing_math(text: str) -> str | None:
    """Rule 8, linear: the text must end with a closing delimiter (before at most a few unit words: "$5\\sqrt{2}$
    cm."); its opening one is found with rfind."""
    t = _TRAILING_WORDS_RE.sub("", text.rstrip(" \t\n.!"), count=1).rstrip(" \t\n.!")
    for close, opening in _MATH_SEGMENTS:
        if not t.endswith(close):
            continue
        body_end = len(t) - len(close)
        start = t.rfind(opening, 0, body_end)
        if start == -1:
            continue
        expr = t[start + len(opening) : body_end].strip()
        expr = expr.rsplit("=", 1)[-1].strip()
        if expr:
            return expr
    return None


def _last_number(text: str) -> str | None:
    numbers = _NUMBER_RE.findall(text)
    return re.sub(r"[,\s]", "", numbers[-1]) if numbers else None


def _option_letter(text: str, options: Sequence[str]) -> str | None:
    """Rule 0: the letter of the one option whose text the whole completion is (normalised)."""
    if len(text) > 2000:
        return None
    answer = normalize_text(text)
    hits = [k for k, option in enumerate(options) if answer and normalize_text(option) == answer]
    return LETTERS[hits[0]] if len(hits) == 1 else None


def extract_answer(completion: str, options: Sequence[str] | None = None) -> str | None:
    """The final answer of a model completion (module docstring: the cascade), or None.

    With ``options`` (the row's option texts in letter order), a completion that is exactly one option's text
    ("The suitcase is on the book.") is that option's letter (rule 0).
    """
    if not isinstance(completion, str) or not completion.strip():
        return None
    text = completion[-MAX_SCAN_CHARS:]
    if options:
        letter = _option_letter(text, options)
        if letter is not None:
            return letter

    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    tag = last_answer_tag(text)
    if tag is not None:
        reduced = _reduce_tag(tag)
        if reduced:
            return reduced
    anchored = _anchored(text)
    if anchored is not None:
        return anchored

    yes_no = _yes_no(text)
    if yes_no is not None:
        return yes_no
    short = _short(text)
    if short is not None:
        letter = choice_letter(short[0])
        if letter is not None:
            return letter
    tail = re.sub(r"[*$]", "", text[-200:]).rstrip()
    m = _TRAILING_CHOICE_RE.search(tail)
    if m:
        return next(g for g in m.groups() if g).upper()
    if short is not None:
        whole = _whole_short_answer(*short)
        if whole is not None:
            return whole
    math_segment = _trailing_math(text)
    if math_segment is not None:
        return math_segment
    return _last_number(text)
