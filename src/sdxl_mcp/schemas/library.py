"""Arguments and results of ``find_images`` (the library)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from sdxl_mcp.schemas.fields import json_number

#: Where a library image came from: generated, Pexels, an image URL, a data URI.
ImageSource = Literal["sdxl", "pexels", "url", "upload"]


# ------------------------------------------------------------------ the library
class FindImagesRequest(BaseModel):
    """Arguments of ``find_images``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = (
        Field(None,
              description="Words in prompts, alt text, photographers; omitted or null: newest.")
    )
    source: ImageSource | None = Field(None, description="Only this source.")
    limit: int = Field(10, ge=1, le=50)
    offset: int = Field(0, ge=0, le=100_000)

    _json_integer = field_validator("limit", "offset", mode="before")(json_number)


class LibraryImage(BaseModel):
    image_id: str
    uri: str
    path: str
    source: ImageSource
    prompt: str
    alt: str | None = None
    width: int
    height: int
    seed: int | None = None
    created: str


class FindImagesResult(BaseModel):
    total: int
    images: list[LibraryImage]
