"""Alt text from an SDXL prompt: what the image shows, without the style tags.

:func:`alt_from_prompt` is a pure function: A1111 syntax is reduced to its words, style and
quality tags (:data:`STYLE_TAGS`) are removed, the text is cleaned and capitalised and cut
at a word boundary to at most :data:`MAX_ALT` characters; a prompt made only of tags gives
``""`` (details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import re

__all__ = ["MAX_ALT", "STYLE_TAGS", "alt_from_prompt", "clip_words"]

#: Screen readers and search engines suggest about 125 characters.
MAX_ALT = 125

#: Phrases that describe rendering quality or style, not what the image shows.
STYLE_TAGS: tuple[str, ...] = (
    "trending on artstation", "trending on cgsociety", "featured on artstation",
    "artstation", "cgsociety", "deviantart", "pixiv",
    "unreal engine 5", "unreal engine", "octane render", "octane", "vray", "v-ray",
    "redshift render", "blender render", "cycles render", "3d render",
    "ray tracing", "raytracing", "ray traced", "global illumination",
    "masterpiece", "best quality", "high quality", "highest quality", "top quality",
    "ultra high quality", "professional quality", "award winning photograph",
    "award winning photo", "award winning", "award-winning",
    "highly detailed", "ultra detailed", "ultra-detailed", "extremely detailed",
    "hyper detailed", "hyperdetailed", "insanely detailed", "intricate details",
    "intricate detail", "intricate", "fine details", "very detailed", "detailed",
    "ultra realistic", "ultra-realistic", "ultrarealistic", "hyperrealistic",
    "hyper realistic", "hyper-realistic", "photorealistic", "photo realistic",
    "photo-realistic", "realistic",
    "cinematic lighting", "cinematic light", "cinematic", "dramatic lighting",
    "studio lighting", "volumetric lighting", "volumetric light", "volumetric",
    "sharp focus", "soft focus", "depth of field", "bokeh", "dof",
    "uhd", "ultra hd", "full hd", "hdr", "uhdr", "high resolution", "highres",
    "high res", "hi-res", "absurdres", "8k uhd", "8k resolution", "4k resolution",
    "16k", "8k", "4k", "2k", "dslr", "raw photo", "film grain", "epic composition",
    "epic", "stunning", "beautiful", "gorgeous", "amazing", "breathtaking",
    "wallpaper", "hd wallpaper", "concept art", "digital painting",
    "smooth", "elegant", "vivid colors", "vibrant colors", "rule of thirds",
)

_TAG_RE = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(re.escape(t) for t in sorted(STYLE_TAGS, key=len, reverse=True))
    + r")(?![\w-])",
    re.IGNORECASE,
)
_LORA_RE = re.compile(r"<[^<>]*>")
_WEIGHT_RE = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=[)\]}])")  # "(word:1.2)" -> "(word)"
_BREAK_RE = re.compile(r"\bBREAK\b")
_BRACKETS_RE = re.compile(r"[()\[\]{}]")
_WS_RE = re.compile(r"\s+")
_EDGE_PUNCT = " ,;:.-|/&+"
_DANGLING_RE = re.compile(r"(?:\s+(?:in|with|of|by|and|at|on|for|from))+$", re.IGNORECASE)


def alt_from_prompt(prompt: str, max_length: int = MAX_ALT) -> str:
    """``prompt`` as alt text: its subject, no style tags, at most ``max_length``."""
    text = "".join(ch if ch.isprintable() else " " for ch in prompt.replace("\n", ","))
    text = _LORA_RE.sub(" ", text)
    text = _WEIGHT_RE.sub("", text)
    text = _BREAK_RE.sub(",", text)
    text = _BRACKETS_RE.sub(" ", text)
    parts: list[str] = []
    for part in re.split(r"[,;\n]", text):
        stripped = _TAG_RE.sub(" ", part)
        kept = _WS_RE.sub(" ", stripped).strip(_EDGE_PUNCT)
        if stripped != part:  # "a bridge in 4k" -> "a bridge", not "a bridge in"
            kept = _DANGLING_RE.sub("", kept).strip(_EDGE_PUNCT)
        kept = re.sub(r"\s+([,.;:!?])", r"\1", kept)
        if re.search(r"\w", kept) and not _only_filler(kept):
            parts.append(kept)
    alt = ", ".join(parts)
    alt = clip_words(alt, max_length).strip(_EDGE_PUNCT)
    return alt[:1].upper() + alt[1:]


def clip_words(text: str, max_length: int) -> str:
    """``text`` cut to ``max_length`` characters at the last word boundary."""
    text = _WS_RE.sub(" ", text).strip()
    if len(text) <= max_length:
        return text
    cut = text[: max_length + 1]
    boundary = cut.rfind(" ")
    return (cut[:boundary] if boundary > 0 else text[:max_length]).rstrip(_EDGE_PUNCT)


_FILLER = frozenset({"a", "an", "the", "and", "with", "in", "of", "by", "very", "style",
                     "quality", "lighting", "light", "render", "photo", "resolution"})


def _only_filler(part: str) -> bool:
    """A part left with only joining words once its tags are gone ("in 4k" -> "in")."""
    return all(word.lower() in _FILLER for word in re.findall(r"\w+", part))
