"""LoRA references in a request: the ``loras`` field and A1111 ``<lora:name:weight>`` tags.

Guarantees (docs/LORA.md): a :class:`LoraRef` is a file name and a weight 0.0-2.0; a
``<lora:...>`` tag in a prompt means the same as that entry in ``loras``; at most
:data:`MAX_LORAS` in all; whether a name exists is the service's check, not this module's
(details: docs/ARCHITECTURE.md "Guarantees"). Pure: stdlib and pydantic only (no torch), so
every transport and the Ray front validate the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from sdxl_mcp.schemas.prompt_syntax import LORA_TAG_RE

__all__ = [
    "MAX_LORAS",
    "MAX_WEIGHT",
    "LoraInfo",
    "LoraList",
    "LoraRef",
    "check_loras",
    "lora_overrides_reopen_refiner",
    "prompt_loras",
    "prompt_without_lora_tags",
    "requested_loras",
    "skip_refiner_for_loras",
]

MAX_LORAS = 4
MAX_WEIGHT = 2.0
#: A1111's extra-network tag, only the ``lora`` kind: ``<lora:name>`` or ``<lora:name:w>``.
_BAD_NAME_CHARS = frozenset('<>:"/\\\x00')

LoraName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


# One LoRA adapter for a request: a file of SDXL_MCP_LORA_DIRS and its weight (no
# docstring: it would be repeated in every tool's input schema).
class LoraRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: LoraName  # a name list_loras gives (said by the loras fields)
    weight: float = Field(1.0, ge=0.0, le=MAX_WEIGHT)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("weight", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool | str | bytes):
            raise ValueError(f"weight must be a number (got {value!r})")
        return value


def _check_name(name: str) -> str:
    bad = sorted(set(name) & _BAD_NAME_CHARS)
    if bad:
        raise ValueError(f"a LoRA name is a file name without folders; {name[:60]!r} has "
                         f"{' '.join(repr(c) for c in bad)}")
    return name


def prompt_loras(prompt: str) -> list[LoraRef]:
    """The ``<lora:name:weight>`` tags of ``prompt``, in order; ValueError names a bad one."""
    refs: list[LoraRef] = []
    for match in LORA_TAG_RE.finditer(prompt):
        parts = match.group(1).split(":")
        tag = match.group(0)
        if len(parts) > 2 or not parts[0].strip():
            raise ValueError(f"prompt: {tag[:80]} is not <lora:name> or <lora:name:weight>")
        try:
            weight = float(parts[1]) if len(parts) == 2 else 1.0
        except ValueError:
            raise ValueError(f"prompt: the weight of {tag[:80]} is not a number") from None
        if not math.isfinite(weight) or not 0.0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"prompt: the weight of {tag[:80]} must be 0.0-{MAX_WEIGHT:.1f}")
        try:
            refs.append(LoraRef(name=_check_name(parts[0].strip()), weight=weight))
        except ValueError as exc:
            raise ValueError(f"prompt: {tag[:80]}: {exc}") from None
    return refs


def prompt_without_lora_tags(prompt: str) -> str:
    """The text to encode: ``prompt`` with its ``<lora:...>`` tags removed (spaces tidied)."""
    if not has_lora_tags(prompt):
        return prompt
    text = LORA_TAG_RE.sub(" ", prompt)
    text = re.sub(r"[ \t]+([,.;])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def requested_loras(prompt: str, loras: Sequence[LoraRef]) -> list[LoraRef]:
    """Every LoRA a request asks for: ``loras`` first, then the prompt's tags."""
    return [*loras, *prompt_loras(prompt)]


def check_loras(prompt: str, loras: Sequence[LoraRef], field: str = "loras") -> list[LoraRef]:
    """:func:`requested_loras`, refusing a name given twice and more than MAX_LORAS
    (ValueError, its message starting with ``field``)."""
    refs = requested_loras(prompt, loras)
    seen: set[str] = set()
    for ref in refs:
        if ref.name in seen:
            raise ValueError(f"{field}: the LoRA {ref.name!r} is given twice (in loras or as "
                             "a <lora:...> tag in the prompt); give each LoRA once")
        seen.add(ref.name)
    if len(refs) > MAX_LORAS:
        raise ValueError(f"{field}: at most {MAX_LORAS} LoRAs per request, counting "
                         f"<lora:...> tags in the prompt (got {len(refs)})")
    return refs


def skip_refiner_for_loras(data: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A request with LoRAs that does not set ``use_refinement`` itself (in ``given``)
    skips the refiner: it was not trained with them. The one home of that rule. ``data`` is the
    request's raw fields (after a preset); returned updated."""
    if "use_refinement" not in given and asks_for_loras(given):
        return {**data, "use_refinement": False}
    return data


def lora_overrides_reopen_refiner(overrides: dict[str, Any]) -> bool:
    """Whether a variation's ``overrides`` change its LoRAs, so the source's
    ``use_refinement`` no longer holds: new LoRAs skip the refiner unless it is
    asked (:func:`skip_refiner_for_loras`), and ``loras=[]`` (removing the source's)
    lets the request's own default decide again."""
    return "loras" in overrides or has_lora_tags(overrides.get("prompt"))


def has_lora_tags(prompt: Any) -> bool:
    """Whether ``prompt`` is text holding a ``<lora:...>`` tag (any case)."""
    return isinstance(prompt, str) and LORA_TAG_RE.search(prompt) is not None


def asks_for_loras(fields: dict[str, Any]) -> bool:
    """Whether raw request ``fields`` ask for a LoRA: a non-empty ``loras`` or a tag."""
    return bool(fields.get("loras")) or has_lora_tags(fields.get("prompt"))


class LoraInfo(BaseModel):
    name: str
    bytes: int
    loaded: bool | None = None  # in the engine's adapter cache; null: unknown (Ray)


# What list_loras returns (no docstring: output schemas keep types and names).
class LoraList(BaseModel):
    loras: list[LoraInfo]
    dirs: list[str]
