"""AUTOMATIC1111 ``parameters`` infotext: what a generated PNG says about itself.

Guarantees:

* :func:`format_infotext` writes the A1111 layout (``<prompt>``, an optional
  ``Negative prompt:`` line, then ``Steps: N, Sampler: ..., CFG scale: X, Seed:
  S, Size: WxH, Model hash: ..., Model: ...``, for edits ``Denoising strength: 0.6, Source image:
  <id>``, ``Lora hashes`` and the Refiner keys), so A1111, ComfyUI and exif
  viewers read it; values that would break the ``Key: value, ...`` line are
  JSON-quoted, as A1111 does;
* :func:`parse_infotext` reads it back (prompts with commas, colons, quotes and
  newlines round-trip);
* the text goes into the PNG text chunk named :data:`PARAMETERS_CHUNK`.

Pure functions: no I/O, stdlib only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["PARAMETERS_CHUNK", "InfotextParams", "format_infotext", "parse_infotext"]

PARAMETERS_CHUNK = "parameters"

_NEGATIVE_PREFIX = "Negative prompt:"
# One "Key: value" pair of the last line; values with , : " or newlines are
# JSON-quoted by format_infotext (A1111 does the same).
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
# A1111's rule: a last line with fewer key/value pairs is part of the prompt.
_MIN_PARAMS_ON_LAST_LINE = 3


@dataclass(frozen=True, kw_only=True)
class InfotextParams:
    """What goes into the ``parameters`` chunk of a generated PNG."""

    prompt: str
    negative_prompt: str | None = None
    steps: int
    sampler: str = "Euler"
    #: A1111's ``Schedule type`` (draft mode's trailing timesteps are its "SGM Uniform").
    schedule_type: str | None = None
    cfg_scale: float
    seed: int
    width: int
    height: int
    model: str
    #: A1111's "Model hash" (AutoV2) of a single-file checkpoint; None for folders and hub ids.
    model_hash: str | None = None
    refiner: str | None = None
    refiner_switch_at: float | None = None
    refiner_mode: str | None = None
    refiner_steps: int | None = None
    refiner_strength: float | None = None
    #: Edits: the img2img/inpaint strength, and the ids of the source and the mask.
    denoising_strength: float | None = None
    source_image: str | None = None
    mask_image: str | None = None
    #: A1111's ``Lora hashes``: ``"name: shorthash, ..."`` (the tags stay in the prompt).
    lora_hashes: str | None = None


def _quote(value: str) -> str:
    """Quote a value only when it would otherwise break the ``Key: value, ...`` line."""
    if value and value == value.strip() and not any(c in value for c in ',:"\n\r'):
        return value
    return json.dumps(value, ensure_ascii=False)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _fmt_number(value: float) -> str:
    # ints stay ints; floats keep Python's shortest round-trip form (8.0, 0.8).
    return str(value) if isinstance(value, int) else repr(float(value))


def format_infotext(params: InfotextParams) -> str:
    """Render ``params`` in the AUTOMATIC1111 ``parameters`` format.

    ``<prompt>\\nNegative prompt: <neg>\\nSteps: N, Sampler: ..., ...``; the
    negative line is omitted when there is no negative prompt and the Refiner
    keys when there is no refiner.
    """
    pairs: list[tuple[str, str]] = [
        ("Steps", str(params.steps)),
        ("Sampler", params.sampler),
        *([("Schedule type", params.schedule_type)] if params.schedule_type else []),
        ("CFG scale", _fmt_number(params.cfg_scale)),
        ("Seed", str(params.seed)),
        ("Size", f"{params.width}x{params.height}"),
        *([("Model hash", params.model_hash)] if params.model_hash else []),
        ("Model", params.model),
    ]
    if params.denoising_strength is not None:
        pairs.append(("Denoising strength", _fmt_number(params.denoising_strength)))
    if params.source_image is not None:
        pairs.append(("Source image", params.source_image))
    if params.mask_image is not None:
        pairs.append(("Mask image", params.mask_image))
    if params.lora_hashes:
        pairs.append(("Lora hashes", params.lora_hashes))
    if params.refiner:
        pairs.append(("Refiner", params.refiner))
        if params.refiner_switch_at is not None:
            pairs.append(("Refiner switch at", _fmt_number(params.refiner_switch_at)))
        if params.refiner_mode is not None:
            pairs.append(("Refiner mode", params.refiner_mode))
        if params.refiner_steps is not None:
            pairs.append(("Refiner steps", str(params.refiner_steps)))
        if params.refiner_strength is not None:
            pairs.append(("Refiner strength", _fmt_number(params.refiner_strength)))

    lines = [params.prompt]
    if params.negative_prompt:
        lines.append(f"{_NEGATIVE_PREFIX} {params.negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in pairs))
    return "\n".join(lines)


def _parse_params_line(line: str) -> dict[str, str] | None:
    pairs = {m.group(1): _unquote(m.group(2)) for m in _PARAM_RE.finditer(line) if m.group(1)}
    return pairs if len(pairs) >= _MIN_PARAMS_ON_LAST_LINE else None


def parse_infotext(text: str) -> dict[str, str]:
    """Parse an AUTOMATIC1111 ``parameters`` text back into a flat dict.

    Returns ``{"prompt": ..., "negative_prompt": ..., "Steps": "50", ...}``; all
    values are strings, ``negative_prompt`` is ``""`` when absent. As in A1111,
    every line before the first ``Negative prompt:`` line is the prompt, the
    last line holds the key/value pairs, and lines in between are the negative
    prompt. (So a prompt that itself contains a line starting with
    ``Negative prompt:`` cannot round-trip; A1111 has the same limit.)
    """
    lines = text.split("\n")  # not splitlines(): it also splits on \x0b, \x1c, ...
    params = _parse_params_line(lines[-1])
    body = lines[:-1] if params is not None else lines

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in body:
        if not in_negative and line.startswith(_NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(_NEGATIVE_PREFIX) :]
            line = line[1:] if line.startswith(" ") else line
        (negative_lines if in_negative else prompt_lines).append(line)

    result = {"prompt": "\n".join(prompt_lines), "negative_prompt": "\n".join(negative_lines)}
    result.update(params or {})
    return result
