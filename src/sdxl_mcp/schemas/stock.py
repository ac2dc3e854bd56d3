"""Arguments and results of ``search_stock_image`` (Pexels /v1/search)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from sdxl_mcp.schemas.fields import _no_control_chars

# ------------------------------------------------------------------ stock photos
Orientation = Literal["landscape", "portrait", "square"]
PhotoSize = Literal["large", "medium", "small"]


class StockSearchRequest(BaseModel):
    """Arguments of ``search_stock_image`` (Pexels /v1/search)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ] = Field(description="e.g. 'team meeting in a bright office'.")
    orientation: Orientation | None = None
    size: PhotoSize | None = Field(
        None, description="Minimum: large 24 MP, medium 12 MP, small 4 MP."
    )
    color: Annotated[str, StringConstraints(pattern=r"^(#?[0-9a-fA-F]{6}|[a-z]{3,10})$")] | None = (
        Field(None, description="A color name or hex code like #ffffff.")
    )
    per_page: int = Field(5, ge=1, le=80)
    page: int = Field(1, ge=1, le=1000)
    download: bool = Field(True, description="Save the best match and return its path.")

    @field_validator("query")
    @classmethod
    def _reject_nul(cls, value: str) -> str:
        return _no_control_chars(value, "query") or value


class PexelsPhoto(BaseModel):
    id: int
    url: str = Field(description="The photo's page on pexels.com.")
    photographer: str
    photographer_url: str
    alt: str = ""
    width: int
    height: int
    avg_color: str | None = None
    src: dict[str, str] = Field(default_factory=dict)


class DownloadedPhoto(BaseModel):
    photo_id: int
    image_id: str | None = None
    path: str
    source_url: str
    attribution: str
    cached: bool = False
    width: int | None = Field(None, description="Width in pixels of the saved file.")
    height: int | None = Field(None, description="Height in pixels of the saved file.")


class StockSearchResult(BaseModel):
    query: str
    page: int
    per_page: int
    total_results: int
    photos: list[PexelsPhoto]
    downloaded: DownloadedPhoto | None = None
    rate_limit_remaining: int | None = None
    cached: bool = False
