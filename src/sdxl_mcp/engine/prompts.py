"""Whole prompts for SDXL's text encoders: long, weighted, ``BREAK``-separated, via compel.

The A1111 syntax is read by :mod:`sdxl_mcp.schemas.prompt_syntax`; compel tokenizes, chunks,
weights and encodes. Nothing of a prompt is dropped (75-token chunks per ``BREAK`` segment,
both text encoders); a short prompt without emphasis gives diffusers' ``encode_prompt``
tensors bit for bit; the Compel objects are made per call (a LoRA would make their cache
stale). Checked in tests/engine/test_prompts.py on the tiny models
(details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from compel import Compel, ReturnedEmbeddingsType
from compel.embeddings_provider import SplitLongTextMode
from compel.prompt_parser import Conjunction, FlattenedPrompt

from sdxl_mcp.schemas.prompt_syntax import Segment, parse_prompt, plain_text

__all__ = ["EncodedPrompts", "encode_prompts"]


@dataclass
class EncodedPrompts:
    """The embedding kwargs for each stage's pipeline call, and the token counts."""

    base: dict[str, torch.Tensor]
    refiner: dict[str, torch.Tensor] = field(default_factory=dict)
    prompt_tokens: int = 0
    negative_prompt_tokens: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """The EngineOutput fields."""
        return {"prompt_tokens": self.prompt_tokens,
                "negative_prompt_tokens": self.negative_prompt_tokens}


def encode_prompts(
    base: Any,
    refiner: Any | None,
    prompt: str,
    negative_prompt: str | None,
    guidance_scale: float,
) -> EncodedPrompts:
    """Embeddings of ``prompt`` (and the negative) for ``base`` and, if given, ``refiner``.

    ``base`` is any pipeline with both text encoders (generation, img2img,
    inpainting); ``refiner`` has only ``text_encoder_2``. The texts are the ones
    to encode, A1111 syntax included.
    """
    positive = parse_prompt(prompt, "prompt")
    negative = parse_prompt(negative_prompt, "negative_prompt") if negative_prompt else None
    cfg = guidance_scale > 1.0
    with torch.no_grad():
        encoded = EncodedPrompts(base=_stage(base, positive, negative, cfg))
        if refiner is not None:
            encoded.refiner = _stage(refiner, positive, negative, cfg)
    first = _compels(base)[0]
    encoded.prompt_tokens = _count(first, positive)
    encoded.negative_prompt_tokens = _count(first, negative) if negative else 0
    return encoded


def _compels(pipe: Any) -> list[Compel]:
    """One Compel per text encoder of ``pipe``; the last one (text_encoder_2) pools."""
    pairs = [(pipe.tokenizer_2, pipe.text_encoder_2)]
    if getattr(pipe, "text_encoder", None) is not None:
        pairs.insert(0, (pipe.tokenizer, pipe.text_encoder))
    return [
        Compel(
            tokenizer=tokenizer,
            text_encoder=encoder,
            returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
            truncate_long_prompts=False,
            split_long_text_mode=SplitLongTextMode.PHRASES,
            requires_pooled=encoder is pairs[-1][1],
        )
        for tokenizer, encoder in pairs
    ]


def _stage(
    pipe: Any, positive: list[Segment], negative: list[Segment] | None, cfg: bool
) -> dict[str, torch.Tensor]:
    compels = _compels(pipe)
    embeds = [_conditioning(c, positive) for c in compels]
    zeros = negative is None and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    negatives = [_conditioning(c, negative or [()]) for c in compels] if cfg and not zeros else []
    length = max(t.shape[1] for t in embeds + negatives)
    embeds = [_pad(c, t, length) for c, t in zip(compels, embeds, strict=True)]
    kwargs = {
        "prompt_embeds": torch.cat(embeds, dim=-1),
        "pooled_prompt_embeds": _pooled(compels[-1], positive),
    }
    if cfg and zeros:
        kwargs["negative_prompt_embeds"] = torch.zeros_like(kwargs["prompt_embeds"])
        kwargs["negative_pooled_prompt_embeds"] = torch.zeros_like(kwargs["pooled_prompt_embeds"])
    elif cfg:
        negatives = [_pad(c, t, length) for c, t in zip(compels, negatives, strict=True)]
        kwargs["negative_prompt_embeds"] = torch.cat(negatives, dim=-1)
        kwargs["negative_pooled_prompt_embeds"] = _pooled(compels[-1], negative or [()])
    return kwargs


def _conditioning(compel: Compel, segments: list[Segment]) -> torch.Tensor:
    """Each segment chunked and encoded, concatenated along the tokens (compel's ``.and()``)."""
    # An empty segment is the empty prompt (compel cannot tokenize no fragments at all).
    conjunction = Conjunction([
        FlattenedPrompt([(f.text, f.weight) for f in segment] or [("", 1.0)])
        for segment in segments
    ])
    conditioning, _ = compel.build_conditioning_tensor_for_conjunction(conjunction)
    tensor: torch.Tensor = conditioning
    return tensor


def _pad(compel: Compel, tensor: torch.Tensor, length: int) -> torch.Tensor:
    """``tensor`` lengthened to ``length`` tokens with compel's empty-prompt chunks."""
    if tensor.shape[1] == length:
        return tensor
    marker = tensor.new_zeros(tensor.shape[0], length, tensor.shape[2])
    padded: torch.Tensor = compel.pad_conditioning_tensors_to_same_length([tensor, marker])[0]
    return padded


def _pooled(compel: Compel, segments: list[Segment]) -> torch.Tensor:
    provider = compel.conditioning_provider
    pooled: torch.Tensor = provider.get_pooled_embeddings([plain_text(segments[0])])
    return pooled.to(dtype=provider.text_encoder.dtype)


def _count(compel: Compel, segments: list[Segment]) -> int:
    texts = [f.text for segment in segments for f in segment]
    if not texts:
        return 0
    ids = compel.conditioning_provider.get_token_ids(texts, include_start_and_end_markers=False)
    return sum(len(i) for i in ids)
