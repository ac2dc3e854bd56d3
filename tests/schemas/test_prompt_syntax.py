"""A1111 prompt syntax (``sdxl_mcp.schemas.prompt_syntax``) and the request checks built on it.

Torch-free: the table of what each piece of syntax means, the errors that
quote the fragment, and that the requests keep the prompt as written.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sdxl_mcp.schemas import EditRequest, GenerationRequest, describe_validation_error
from sdxl_mcp.schemas.prompt_syntax import (
    Fragment,
    PromptSyntaxError,
    parse_prompt,
    plain_text,
    strip_lora_tags,
)
from sdxl_mcp.schemas.vary import VaryRequest
from sdxl_mcp.service.results import infotext_params
from tests.fakes import engine_output

F = Fragment
R, S = 1.1, round(1 / 1.1, 6)


@pytest.mark.parametrize(("prompt", "segments"), [
    ("a lighthouse at dawn", [(F("a lighthouse at dawn"),)]),
    ("a (lighthouse) at dawn", [(F("a "), F("lighthouse", R), F(" at dawn"))]),
    ("((lighthouse))", [(F("lighthouse", 1.21),)]),
    ("[fog]", [(F("fog", S),)]),
    ("(lighthouse:1.3), fog", [(F("lighthouse", 1.3), F(", fog"))]),
    ("( lighthouse : 0.5 )", [(F(" lighthouse ", 0.5),)]),
    ("(a (b:1.5) c)", [(F("a ", R), F("b", 1.65), F(" c", R))]),
    ("(a [b] c)", [(F("a ", R), F("b"), F(" c", R))]),
    ("(style:photo)", [(F("style:photo", R),)]),
    ("ratio 16:9", [(F("ratio 16:9"),)]),
    (r"a \(literal\) \[x\] back\\slash", [(F(r"a (literal) [x] back\slash"),)]),
    ("sea BREAK sky", [(F("sea"),), (F("sky"),)]),
    ("(sea BREAK sky:1.2)", [(F("sea", 1.2),), (F("sky", 1.2),)]),
    ("BREAKFAST and break", [(F("BREAKFAST and break"),)]),
    ("a cat <lora:film_grain:0.8>", [(F("a cat "),)]),
    ("<LORA:x:1>(cat:1.2)", [(F("cat", 1.2),)]),
    ("(cat:0)", [(F("cat", 0.0),)]),
    ("(cat:2)", [(F("cat", 2.0),)]),
    ("BREAK", [()]),
    ("  ", [()]),
])
def test_a1111_syntax_reads_as_weighted_fragments_per_segment(
    prompt: str, segments: list[tuple[Fragment, ...]]
) -> None:
    assert parse_prompt(prompt) == segments


@pytest.mark.parametrize(("prompt", "quoted", "hint"), [
    ("red hair, (blue eyes, freckles", "'(blue eyes, freckles'", r"write \("),
    ("a [misty lake", "'[misty lake'", r"write \["),
    ("a smile :)", "'a smile :)'", r"write \)"),
    ("sky]", "'sky]'", r"write \]"),
    ("(a lake]", "'(a lake]'", "brackets must nest"),
    ("[a lake:1.2)", "'[a lake:1.2)'", "brackets must nest"),
    ("(cat:2.5)", "'(cat:2.5)'", "0-2"),
    ("(cat:-1)", "'(cat:-1)'", "0-2"),
    ("(cat:1.2.3)", "'(cat:1.2.3)'", "not a number"),
    ("(((((((((cat)))))))))", "'cat'", "nested brackets multiply"),
])
def test_bad_syntax_is_an_error_that_quotes_the_fragment(
    prompt: str, quoted: str, hint: str
) -> None:
    with pytest.raises(PromptSyntaxError) as info:
        parse_prompt(prompt, "negative_prompt")
    message = str(info.value)
    assert message.startswith("negative_prompt ")
    assert quoted in message and hint in message


def test_a_long_fragment_is_quoted_shortened() -> None:
    with pytest.raises(PromptSyntaxError) as info:
        parse_prompt("(" + "word " * 40)
    assert "'(word word word" in str(info.value) and "...'" in str(info.value)


def test_plain_text_joins_a_segment_without_weights() -> None:
    assert plain_text(parse_prompt("a (red:1.4) [old] door")[0]) == "a red old door"
    assert strip_lora_tags("x <lora:a:1> y") == "x  y"


# ------------------------------------------------------------------ requests
def _error(model: type[Any], **fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        model(**fields)
    return describe_validation_error(info.value)


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_generation_requests_reject_bad_syntax_naming_the_field(field: str) -> None:
    fields = {"prompt": "a lighthouse", field: "a lighthouse (at dawn"}
    message = _error(GenerationRequest, **fields)
    assert message.startswith(f"Invalid request: {field} has an unclosed '('")
    assert "'(at dawn'" in message


def test_edit_and_vary_requests_reject_bad_syntax_too() -> None:
    assert "'(fog:3)'" in _error(EditRequest, image="x", prompt="a lake (fog:3)")
    assert "'(fog:3)'" in _error(VaryRequest, image="x", prompt="a lake (fog:3)")
    assert "closes nothing" in _error(VaryRequest, image="x", negative_prompt="blur)")


def test_the_request_and_the_infotext_keep_the_prompt_as_written() -> None:
    written = "a (lighthouse:1.3) at dawn BREAK [fog], film <lora:grain:0.5>"
    request = GenerationRequest(prompt=written, negative_prompt="(blurry)")
    assert request.prompt == written
    output = engine_output(None, steps_base=1, base_model="m")  # type: ignore[arg-type]
    params = infotext_params(request, output)
    assert (params.prompt, params.negative_prompt) == (written, "(blurry)")


_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00\\"),
                max_size=200).filter(lambda t: "BREAK" not in t and "<lora:" not in t.lower())


@settings(max_examples=200, deadline=None)
@given(_TEXT)
def test_property_escaped_text_is_read_literally(text: str) -> None:
    escaped = "".join("\\" + ch if ch in "()[]" else ch for ch in text)
    segments = parse_prompt(escaped)
    assert len(segments) == 1 and all(f.weight == 1.0 for f in segments[0])
    assert "".join("".join(f.text for f in segments[0]).split()) == "".join(text.split())
