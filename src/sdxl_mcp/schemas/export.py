"""The models of ``export_image`` (MCP) and ``POST /api/media/export`` (REST).

Under the same rules as the other request models:
bounds live here, nothing is clamped, a JSON null for a defaulted field means
the default (``schemas.without_default_nulls``), and a bad value is an error
naming the field. docs/LIBRARY.md "Web-ready export" is the contract.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from sdxl_mcp.schemas.fields import (
    _NO_NUL,
    REQUEST_CONFIG,
    ImageReference,
    json_number,
    without_default_nulls,
)

__all__ = ["EXPORT_PRESETS", "ExportFormat", "ExportPreset", "ExportRequest", "ExportResult"]

ExportPreset = Literal["og", "hero", "square", "thumbnail", "original"]
ExportFormat = Literal["webp", "jpeg", "png"]

#: Output sizes of the presets; ``original`` keeps the source's size.
EXPORT_PRESETS: dict[str, tuple[int, int] | None] = {
    "og": (1200, 630),
    "hero": (1600, 900),
    "square": (1080, 1080),
    "thumbnail": (400, 400),
    "original": None,
}
MIN_SIDE, MAX_SIDE = 16, 4096
MIN_BYTES, MAX_BYTES = 10_000, 10_000_000
AltText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), _NO_NUL]


class ExportRequest(BaseModel):
    """Arguments of ``export_image`` (docs/LIBRARY.md "Web-ready export")."""

    model_config = REQUEST_CONFIG

    image: ImageReference = Field(
        description="image_id, image:// URI, path, http(s) URL or data: URI.")
    preset: ExportPreset = Field(
        "og", description="og 1200x630, hero 1600x900, square 1080x1080, thumbnail 400x400, "
        "original (same size)."
    )
    width: int | None = Field(
        None, ge=MIN_SIDE, le=MAX_SIDE,
        description="Instead of the preset's; alone, keeps the aspect.",
    )
    height: int | None = Field(
        None, ge=MIN_SIDE, le=MAX_SIDE,
        description="Instead of the preset's; alone, keeps the aspect.",
    )
    fit: Literal["cover", "contain"] = Field(
        "cover", description="cover: crop to the size; contain: fit inside."
    )
    format: ExportFormat = "webp"
    quality: int = Field(85, ge=1, le=100, description="webp/jpeg quality.")
    max_bytes: int | None = Field(
        None, ge=MIN_BYTES, le=MAX_BYTES,
        description="Lower the quality until the file fits.",
    )
    alt: AltText | None = Field(
        None, description="Default: the Pexels alt or the prompt less style tags."
    )

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        return without_default_nulls(cls, data) if isinstance(data, dict) else data

    _json_integer = field_validator(
        "width", "height", "quality", "max_bytes", mode="before")(json_number)

    @field_validator("image", "alt")
    @classmethod
    def _no_nul(cls, value: str | None, info: Any) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError(f"{info.field_name} must not contain NUL characters")
        return value


class ExportResult(BaseModel):
    """What ``export_image`` made: the file, its facts, and snippets to paste.

    ``image_id`` is null for an INPUT_DIRS file; ``uri`` is the file's file://
    URI; ``quality`` is null for png; ``attribution`` is the Pexels credit for a
    stock photo (else null); ``cached``: the same export already existed. (No
    field descriptions: output schemas keep types and names, not prose.)
    """

    image_id: str | None
    path: str
    uri: str
    width: int
    height: int
    format: ExportFormat
    bytes: int
    quality: int | None
    alt: str
    html: str
    markdown: str
    attribution: str | None
    cached: bool = False
