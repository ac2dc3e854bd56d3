"""Whole prompts on the tiny models (``engine.prompts``): long, weighted, BREAK, counted.

The tiny tokenizer reads one token per character (spaces aside), so the
prompts below are long in tokens while short in characters. Generations run
at 64 px with 3-4 steps (set past the request's bounds: the engine does not
re-validate).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from mcp import Client
from PIL import Image

from sdxl_mcp.engine.prompts import encode_prompts
from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.library import parse_infotext
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.service.facade import ImageService

TINY = {"width": 64, "height": 64, "num_inference_steps": 3}
# 120 tokens: 83 shared, then the tails differ (the tiny tokenizer: a token a letter).
HEAD = ("lighthouse on a cliff, stormy sea, gulls over the waves, old stone walls, moss and "
        "salt spray, an old ")
LONG_A = HEAD + "red door and a tall copper lantern shining on"
LONG_B = HEAD + "blue gate and a low brass lamp post glowing on"


def request(prompt: str, **fields: Any) -> GenerationRequest:
    """A request at 64 px and 3 steps (``TINY`` fields may be overridden), no refiner."""
    tiny = {**TINY, **{k: v for k, v in fields.items() if k in TINY}}
    valid = {"use_refinement": False, **{k: v for k, v in fields.items() if k not in TINY}}
    return GenerationRequest(prompt=prompt, **valid).model_copy(update=tiny)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def tokens(engine: SDXLEngine, text: str) -> list[int]:
    ids: list[int] = engine.base.tokenizer(text).input_ids
    return ids[1:-1]


def test_the_long_prompts_share_their_first_80_tokens_and_differ_after(
    tiny_engine: SDXLEngine,
) -> None:
    a, b = tokens(tiny_engine, LONG_A), tokens(tiny_engine, LONG_B)
    assert len(a) >= 120 and len(b) >= 120
    assert a[:80] == b[:80] and a[80:] != b[80:]


def test_diffusers_alone_cannot_tell_the_two_long_prompts_apart(tiny_engine: SDXLEngine) -> None:
    # Why the tail needed compel: diffusers truncates to the first 77 tokens.
    with torch.no_grad():
        a = tiny_engine.base.encode_prompt(LONG_A, do_classifier_free_guidance=False)[0]
        b = tiny_engine.base.encode_prompt(LONG_B, do_classifier_free_guidance=False)[0]
    assert torch.equal(a, b)


def test_the_tail_of_a_120_token_prompt_changes_the_pixels(tiny_engine: SDXLEngine) -> None:
    a = tiny_engine.generate(request(LONG_A), seed=5)
    b = tiny_engine.generate(request(LONG_B), seed=5)
    again = tiny_engine.generate(request(LONG_A), seed=5)
    assert (pixels(a.image) != pixels(b.image)).any()
    assert (pixels(a.image) == pixels(again.image)).all()


@pytest.mark.parametrize("emphasis", ["(lighthouse:1.5) at dawn", "[lighthouse] at dawn"])
def test_emphasis_changes_the_pixels(tiny_engine: SDXLEngine, emphasis: str) -> None:
    plain = tiny_engine.generate(request("lighthouse at dawn"), seed=3)
    weighted = tiny_engine.generate(request(emphasis), seed=3)
    assert (pixels(plain.image) != pixels(weighted.image)).any()
    assert weighted.prompt_tokens == plain.prompt_tokens


def test_a_short_plain_prompt_encodes_exactly_as_diffusers_did(tiny_engine: SDXLEngine) -> None:
    base, refiner = tiny_engine.base, tiny_engine.refiner
    assert refiner is not None
    for negative in (None, "blurry, dark"):
        ours = encode_prompts(base, refiner, "a lighthouse at dawn", negative, 7.5)
        for pipe, kwargs in ((base, ours.base), (refiner, ours.refiner)):
            with torch.no_grad():
                theirs = pipe.encode_prompt("a lighthouse at dawn", negative_prompt=negative,
                                            do_classifier_free_guidance=True)
            names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                     "negative_pooled_prompt_embeds")
            for name, tensor in zip(names, theirs, strict=True):
                assert torch.equal(kwargs[name], tensor), name


def test_break_starts_a_new_chunk(tiny_engine: SDXLEngine) -> None:
    one = encode_prompts(tiny_engine.base, None, "sea, sky", None, 7.5)
    two = encode_prompts(tiny_engine.base, None, "sea BREAK sky", None, 7.5)
    assert one.base["prompt_embeds"].shape[1] == 77
    assert two.base["prompt_embeds"].shape[1] == 2 * 77
    out = tiny_engine.generate(request("sea BREAK sky"), seed=1)
    assert out.image.size == (64, 64)


def test_a_long_negative_and_a_short_prompt_get_the_same_length(tiny_engine: SDXLEngine) -> None:
    enc = encode_prompts(tiny_engine.base, tiny_engine.refiner, "a lighthouse", LONG_A, 7.5)
    for kwargs in (enc.base, enc.refiner):
        assert kwargs["prompt_embeds"].shape == kwargs["negative_prompt_embeds"].shape
        assert kwargs["prompt_embeds"].shape[1] == 2 * 77
        assert kwargs["pooled_prompt_embeds"].shape == kwargs["negative_pooled_prompt_embeds"].shape


def test_no_negative_follows_each_pipelines_zeros_rule(tiny_engine: SDXLEngine) -> None:
    refiner = tiny_engine.refiner
    assert refiner is not None
    assert tiny_engine.base.config.force_zeros_for_empty_prompt
    assert not refiner.config.force_zeros_for_empty_prompt
    enc = encode_prompts(tiny_engine.base, refiner, LONG_A, None, 7.5)
    assert not enc.base["negative_prompt_embeds"].any()
    assert not enc.base["negative_pooled_prompt_embeds"].any()
    assert enc.refiner["negative_prompt_embeds"].any()  # the empty prompt, encoded
    assert enc.refiner["negative_prompt_embeds"].shape == enc.refiner["prompt_embeds"].shape


def test_without_guidance_no_negative_is_made(tiny_engine: SDXLEngine) -> None:
    enc = encode_prompts(tiny_engine.base, tiny_engine.refiner, LONG_A, "blurry", 1.0)
    assert set(enc.base) == set(enc.refiner) == {"prompt_embeds", "pooled_prompt_embeds"}
    assert enc.negative_prompt_tokens == len(tokens(tiny_engine, "blurry"))


def test_embeds_are_in_the_text_encoders_dtype_and_device(tiny_engine: SDXLEngine) -> None:
    encoder = tiny_engine.base.text_encoder_2
    enc = encode_prompts(tiny_engine.base, tiny_engine.refiner, "(sea:1.2) BREAK sky", "x", 7.5)
    for tensor in [*enc.base.values(), *enc.refiner.values()]:
        assert (tensor.dtype, tensor.device) == (encoder.dtype, encoder.device)


def test_token_counts_are_the_tokenizers_without_bos_eos_break_or_lora_tags(
    tiny_engine: SDXLEngine,
) -> None:
    enc = encode_prompts(tiny_engine.base, None, "(a cat:1.2) BREAK dog <lora:grain:0.5>",
                         None, 7.5)
    assert enc.prompt_tokens == len(tokens(tiny_engine, "a cat dog"))
    assert enc.negative_prompt_tokens == 0
    out = tiny_engine.generate(request(LONG_A, negative_prompt="blurry"), seed=1)
    assert out.prompt_tokens == len(tokens(tiny_engine, LONG_A))
    assert out.negative_prompt_tokens == len(tokens(tiny_engine, "blurry"))


def test_the_refiner_stage_gets_the_whole_prompt(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    refiner = tiny_engine.refiner
    assert refiner is not None
    seen: list[dict[str, Any]] = []
    call = type(refiner).__call__

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self is refiner:
            seen.append(kwargs)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(type(refiner), "__call__", spy)
    for prompt in (LONG_A, LONG_B):
        out = tiny_engine.generate(request(prompt, use_refinement=True, num_inference_steps=4),
                                   seed=2)
        assert out.refined and out.steps_refiner >= 1
    a, b = (call["prompt_embeds"] for call in seen)
    assert a.shape[1] == b.shape[1] == 2 * 77
    assert not torch.equal(a[:, 77:], b[:, 77:])  # the tails reach the refiner


def test_edits_read_the_whole_prompt_too(tiny_engine: SDXLEngine) -> None:
    noise = np.random.RandomState(0).randint(0, 256, (64, 64, 3), dtype=np.uint8)
    source = Image.fromarray(noise)

    def edit(prompt: str) -> Any:
        req = EditRequest(image="unused", prompt=prompt, use_refinement=False)
        return tiny_engine.edit(req.model_copy(update={"num_inference_steps": 4}), 4, source)

    a, b = edit(LONG_A), edit(LONG_B)
    assert (pixels(a.image) != pixels(b.image)).any()
    assert a.prompt_tokens == len(tokens(tiny_engine, LONG_A))


# ------------------------------------------------------------- through MCP
async def test_mcp_results_report_token_counts_and_the_png_keeps_the_prompt(
    make_settings: Any, tiny_engine: SDXLEngine
) -> None:
    settings = make_settings()
    server = build_server(settings, ImageService(settings, backend=tiny_engine))
    written = "a (lighthouse:1.3) at dawn BREAK [fog]"
    async with Client(server) as client:
        result = await client.call_tool("generate_image", {
            "prompt": written, "negative_prompt": "blurry", "seed": 3, "quality": "fast",
            "width": 256, "height": 256})
        bad = await client.call_tool("generate_image", {"prompt": "a (lighthouse"})
    assert not result.is_error
    data = result.structured_content
    assert data["prompt_tokens"] == len(tokens(tiny_engine, "a lighthouse at dawn fog"))
    assert data["negative_prompt_tokens"] == len(tokens(tiny_engine, "blurry"))
    params = parse_infotext(Image.open(data["path"]).info["parameters"])
    assert (params["prompt"], params["negative_prompt"]) == (written, "blurry")
    assert bad.is_error and "'(lighthouse'" in bad.content[0].text


def test_encoding_writes_nothing_to_stdout(
    tiny_engine: SDXLEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    # stdout is MCP's in stdio mode; compel prints in some paths we do not take.
    encode_prompts(tiny_engine.base, tiny_engine.refiner, LONG_A + " (x:0.5)", "y BREAK z", 7.5)
    assert capsys.readouterr().out == ""
