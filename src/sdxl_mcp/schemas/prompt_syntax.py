"""AUTOMATIC1111 prompt syntax: emphasis, ``BREAK`` and ``<lora:...>`` tags, read and checked.

Prompt syntax, not tokenizer code: :func:`parse_prompt` turns a prompt into weighted text
fragments per ``BREAK`` segment, which the engine (``engine.prompts``) hands to compel.
Pure functions, stdlib only. A1111's emphasis; ``<lora:...>`` tags removed, nothing else
dropped; stricter than A1111: unbalanced brackets and weights past 2 are a
:class:`PromptSyntaxError` (the table in tests/schemas/test_prompt_syntax.py;
details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "LORA_TAG_RE",
    "MAX_WEIGHT",
    "Fragment",
    "PromptSyntaxError",
    "Segment",
    "check_prompt_syntax",
    "parse_prompt",
    "plain_text",
    "strip_lora_tags",
]

#: The largest emphasis weight accepted (A1111 users rarely go past 1.5).
MAX_WEIGHT = 2.0
_ROUND, _SQUARE = 1.1, 1 / 1.1
_QUOTE_LEN = 40

#: A1111's LoRA tag, ``<lora:name>`` or ``<lora:name:weight>`` (any case, as A1111
#: reads it); group 1 is what stands after ``lora:``. The one pattern for the tags:
#: ``schemas.loras`` reads them with it and the encoders get the text without them.
LORA_TAG_RE = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*")
# One token of the syntax: an escape, a bracket, a weight-and-close, a colon, or a run of text.
_TOKEN_RE = re.compile(
    r"\\[()\[\]\\]"                      # an escaped bracket or backslash
    r"|:\s*(?P<weight>[+-]?[\d.]+)\s*\)"  # ':1.3)' closes a '(' with that weight
    r"|[()\[\]]"
    r"|[^\\()\[\]:]+"
    r"|[\\:]"
)


class PromptSyntaxError(ValueError):
    """A prompt A1111 would misread or that asks for an unusable weight."""


@dataclass(frozen=True)
class Fragment:
    """A run of text and the weight its tokens get."""

    text: str
    weight: float = 1.0


Segment = tuple[Fragment, ...]


def strip_lora_tags(text: str) -> str:
    """The text without ``<lora:name:weight>`` tags (what the encoders read)."""
    return LORA_TAG_RE.sub("", text)


def check_prompt_syntax(text: str | None, field: str = "prompt") -> None:
    """Raise :class:`PromptSyntaxError` when ``text`` is not well-formed A1111 syntax."""
    if text:
        parse_prompt(text, field)


def plain_text(segment: Segment) -> str:
    """A segment's text without its weights (what its pooled embedding is made of)."""
    return " ".join(f.text.strip() for f in segment if f.text.strip())


def parse_prompt(text: str, field: str = "prompt") -> list[Segment]:
    """The weighted fragments of each ``BREAK``-separated segment of ``text``."""
    source = strip_lora_tags(text)
    # Entries are [text, weight]; None marks a BREAK. Weights are applied when a
    # bracket closes, to every entry since it opened (the weight comes last).
    entries: list[list[object] | None] = []
    opened: list[tuple[str, int, int]] = []  # (bracket, entry index, offset in source)
    for match in _TOKEN_RE.finditer(source):
        token, at = match.group(0), match.start()
        weight = match.group("weight")
        if token.startswith("\\") and len(token) == 2:
            entries.append([token[1], 1.0])
        elif token in "([":
            opened.append((token, len(entries), at))
        elif weight is not None:
            value = _explicit_weight(weight, source, opened, match.end(), field)
            _close(entries, opened.pop(), value)
        elif token in ")]":
            _check_closes(token, source, opened, at, field)
            _close(entries, opened.pop(), _ROUND if token == ")" else _SQUARE)
        else:
            for i, part in enumerate(_BREAK_RE.split(token)):
                if i:
                    entries.append(None)
                entries.append([part, 1.0])
    if opened:
        bracket, _, at = opened[-1]
        closer = ")" if bracket == "(" else "]"
        raise PromptSyntaxError(
            f"{field} has an unclosed {bracket!r} in {_quote(source[at:])}: close it with "
            f"{closer!r}, or write \\{bracket} for a literal bracket"
        )
    return _segments(entries, source, field)


def _explicit_weight(
    number: str, source: str, opened: list[tuple[str, int, int]], end: int, field: str
) -> float:
    if not opened or opened[-1][0] != "(":
        _check_closes(")", source, opened, end - 1, field)
    start = opened[-1][2]
    fragment = _quote(source[start:end])
    try:
        value = float(number)
    except ValueError:
        raise PromptSyntaxError(
            f"{field} has the weight {number!r} in {fragment}, which is not a number"
        ) from None
    if not 0.0 <= value <= MAX_WEIGHT:
        raise PromptSyntaxError(
            f"{field} has the weight {number} in {fragment}: emphasis weights must be "
            f"0-{MAX_WEIGHT:g}"
        )
    return value


def _check_closes(
    closer: str, source: str, opened: list[tuple[str, int, int]], at: int, field: str
) -> None:
    wanted = "(" if closer == ")" else "["
    if opened and opened[-1][0] == wanted:
        return
    context = _quote(source[max(0, at - _QUOTE_LEN + 1): at + 1], cut_left=True)
    if opened:
        raise PromptSyntaxError(
            f"{field} closes {opened[-1][0]!r} with {closer!r} in {context}: brackets must "
            f"nest, or write \\{closer} for a literal bracket"
        )
    raise PromptSyntaxError(
        f"{field} has a {closer!r} that closes nothing in {context}: write \\{closer} for "
        "a literal bracket"
    )


def _close(entries: list[list[object] | None], opened: tuple[str, int, int],
           factor: float) -> None:
    for entry in entries[opened[1]:]:
        if entry is not None:
            entry[1] = float(entry[1]) * factor  # type: ignore[arg-type]


def _segments(entries: list[list[object] | None], source: str, field: str) -> list[Segment]:
    segments: list[Segment] = []
    current: list[Fragment] = []
    for entry in [*entries, None]:
        if entry is None:
            segments.append(tuple(current))
            current = []
            continue
        text, weight = str(entry[0]), round(float(entry[1]), 6)  # type: ignore[arg-type]
        if not text.strip():  # spacing belongs to the text before it, whatever its weight
            if current:
                current[-1] = Fragment(current[-1].text + text, current[-1].weight)
            continue
        if weight > MAX_WEIGHT:
            raise PromptSyntaxError(
                f"{field} gives {_quote(text.strip())} the weight {weight:.3g} (nested "
                f"brackets multiply): emphasis weights must be 0-{MAX_WEIGHT:g}"
            )
        if current and current[-1].weight == weight:
            current[-1] = Fragment(current[-1].text + text, weight)
        else:
            current.append(Fragment(text, weight))
    kept = [s for s in segments if s]
    return kept or [()]


def _quote(text: str, cut_left: bool = False) -> str:
    """``text`` on one line, quoted, at most about :data:`_QUOTE_LEN` characters once quoted."""
    text = " ".join(text.split())
    quoted = repr(text)
    while len(quoted) > _QUOTE_LEN + 2:
        text = text[1:] if cut_left else text[:-1]
        quoted = repr("..." + text if cut_left else text + "...")
    return quoted
