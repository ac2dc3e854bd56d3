"""aspect_ratio: the SDXL training sizes, on every face, and never with width/height."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sdxl_mcp.schemas import (
    ASPECT_RATIOS,
    GenerationRequest,
    RestGenerationRequest,
    describe_validation_error,
)
from tests.helpers_cli import run_cli

DESIGN_SIZES = {"1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344),
                "4:3": (1152, 896), "3:4": (896, 1152), "3:2": (1216, 832),
                "2:3": (832, 1216), "21:9": (1536, 640), "1.91:1": (1344, 704)}


@pytest.mark.parametrize("ratio", sorted(DESIGN_SIZES))
def test_each_ratio_gives_its_sdxl_size(ratio: str) -> None:
    for model in (GenerationRequest, RestGenerationRequest):
        request = model(prompt="x", aspect_ratio=ratio)
        assert (request.width, request.height) == DESIGN_SIZES[ratio]
    assert ASPECT_RATIOS == DESIGN_SIZES


@pytest.mark.parametrize("size", [{"width": 1024}, {"height": 768}, {"width": 512, "height": 512}])
def test_a_ratio_with_width_or_height_is_an_error_naming_both(size: dict[str, int]) -> None:
    with pytest.raises(ValidationError) as caught:
        GenerationRequest(prompt="x", aspect_ratio="16:9", **size)
    message = describe_validation_error(caught.value)
    assert "aspect_ratio" in message and "width or height" in message


def test_an_unknown_ratio_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        GenerationRequest(prompt="x", aspect_ratio="5:4")
    message = describe_validation_error(caught.value)
    assert "aspect_ratio must be one of" in message and "'1.91:1'" in message


def test_null_ratio_and_null_sizes_mean_the_defaults() -> None:
    request = GenerationRequest(prompt="x", aspect_ratio=None, width=None, height=None)
    assert (request.width, request.height) == (1024, 1024)


def test_cli_aspect_with_width_fails_before_any_work(tmp_path: Path) -> None:
    proc = run_cli("generate", "x", "--aspect", "16:9", "--width", "512", tmp_path=tmp_path)
    assert proc.returncode == 2 and "aspect_ratio" in proc.stderr
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").glob("*.png"))


def test_cli_aspect_reaches_the_request_as_that_size() -> None:
    """The parser maps --aspect onto the request field (generation itself is covered
    on every face by the other tests; a 1-megapixel tiny run would cost 30 s here)."""
    from sdxl_mcp.entrypoints.cli.args import GENERATE_FIELDS, build_parser, request_fields

    args = build_parser().parse_args(["generate", "a wide sea", "--aspect", "21:9", "--no-reuse"])
    request = GenerationRequest(prompt=args.prompt, **request_fields(args, GENERATE_FIELDS))
    assert (request.width, request.height, request.reuse) == (1536, 640, False)
