"""Alt text from prompts: a table of prompts and the alt text they give."""

from __future__ import annotations

import pytest

from sdxl_mcp.library.alt_text import MAX_ALT, alt_from_prompt, clip_words


@pytest.mark.parametrize(("prompt", "alt"), [
    ("a red lighthouse on a cliff at dusk", "A red lighthouse on a cliff at dusk"),
    ("a red lighthouse, highly detailed, 4k, 8k, trending on artstation",
     "A red lighthouse"),
    ("masterpiece, best quality, a cat on a windowsill, cinematic, HDR",
     "A cat on a windowsill"),
    ("cinematic photo of a fox in snow, octane render, ultra realistic",
     "Photo of a fox in snow"),
    ("(red:1.3) fox, ((snow)), [forest], {dawn}", "Red fox, snow, forest, dawn"),
    ("a (very happy:1.2) dog <lora:corgi_v2:0.8> running", "A very happy dog running"),
    ("portrait of an old sailor BREAK sharp focus, 8k uhd", "Portrait of an old sailor"),
    ("a   harbour\n\twith  boats", "A harbour, with boats"),
    ("a bridge in 4k, in 8k", "A bridge"),
    ("a house to live in", "A house to live in"),
    ("masterpiece, best quality, 4k, hdr", ""),
    ("", ""),
    ("   ,,, ", ""),
    ("a cat\x00\x07 in a box", "A cat in a box"),
    ("Ein Fuchs im Schnee, highly detailed", "Ein Fuchs im Schnee"),
    ("a 4kids logo, hdr-free look", "A 4kids logo, hdr-free look"),  # whole words only
])
def test_alt_from_prompt(prompt: str, alt: str) -> None:
    assert alt_from_prompt(prompt) == alt


def test_long_prompts_are_cut_at_a_word_boundary() -> None:
    prompt = "a lighthouse " + "and a very long winding coastal road " * 10
    alt = alt_from_prompt(prompt)
    assert len(alt) <= MAX_ALT
    assert prompt.startswith(alt.lower()[:1] + alt[1:]) and not alt.endswith(" ")
    assert prompt[len(alt)] == " "  # the cut fell between words


def test_one_huge_word_is_cut_hard() -> None:
    assert alt_from_prompt("x" * 300) == "X" + "x" * (MAX_ALT - 1)


@pytest.mark.parametrize(("text", "limit", "cut"), [
    ("one two three", 7, "one two"),
    ("one two three", 8, "one two"),
    ("one two three", 13, "one two three"),
    ("one, two three", 5, "one"),
])
def test_clip_words(text: str, limit: int, cut: str) -> None:
    assert clip_words(text, limit) == cut
