"""The agent-facing texts: the server's instructions and the SDXL prompt guide.

Guarantees (``tests/entrypoints/test_prompt_guide.py``): the instructions walk an agent
through the workflow in order (library, stock, generate with a draft first,
vary/edit, export) with the attribution rule for stock photos, in at most
:data:`INSTRUCTIONS_LIMIT` characters; the guide, served as the MCP prompt
:data:`PROMPT_NAME`, covers prompt order, style and lighting words, the
negative prompt, 77-token chunks, the A1111 emphasis syntax, ``BREAK``, LoRA
tags and the aspect ratios (from ``ASPECT_RATIOS``, so it cannot drift), in a
size worth loading.
"""

from __future__ import annotations

from sdxl_mcp.schemas.fields import ASPECT_RATIOS

INSTRUCTIONS_LIMIT = 1500
PROMPT_NAME = "sdxl_prompt_guide"
PROMPT_TITLE = "How to write SDXL prompts"
PROMPT_DESCRIPTION = (
    "Writing prompts for generate_image, edit_image and vary_image: order, style and "
    "lighting words, negative prompts, emphasis (word:1.3), BREAK, LoRA tags, sizes."
)

INSTRUCTIONS = """\
Images for posts. Work in this order:
1. `find_images`: images made or downloaded before; reuse one that fits.
2. `search_stock_image`: free Pexels photos, best for real places, people and \
objects. A stock photo must be published with its attribution line (the result \
carries it, and so does the export).
3. `generate_image`: SDXL, for what stock cannot show. Draft first (`quality` \
"fast", or "draft" where the server has a draft LoRA) with a few seeds, pick one, \
then rerun that `seed` at full quality (the default). The `sdxl_prompt_guide` \
prompt explains prompts and sizes (`aspect_ratio` "16:9" for a hero, "1.91:1" for \
a social card).
4. `vary_image` for more seeds of a generated image; `edit_image` to restyle one \
or repaint part of it (a mask).
5. `export_image` for the post: a web-sized WebP with alt text, <img> HTML and \
Markdown; print its `attribution` when it is not null.
Long jobs answer `status: "running"` and a `job_id`: follow it with \
`get_generation` (it reports `eta_s`), stop it with `cancel_generation`. \
`gpu_status` tells whether the models are loaded."""


def _sizes() -> str:
    return ", ".join(f"{ratio} {w}x{h}" for ratio, (w, h) in ASPECT_RATIOS.items())


PROMPT_GUIDE = f"""\
# Writing SDXL prompts

**Order.** Subject first, then its setting, then style, lighting and camera. SDXL \
weighs early words most: "a red fox sleeping in snow, pine forest at dawn, soft golden \
light, shallow depth of field, photograph, 85mm".

**Style words** pick the medium: photograph, 35mm film, watercolor, oil painting, \
flat vector illustration, isometric 3D render, line art, studio product shot. \
**Lighting**: golden hour, overcast, soft window light, rim light, neon, low key. \
Name one style; mixing several gives mud. Quality tags ("masterpiece", "8k") add little \
to SDXL.

**Negative prompt** lists what to keep out, as plain nouns: "text, watermark, logo, \
blurry, extra fingers, frame". Not instructions ("don't..."); words in the prompt \
itself with "no" tend to summon the thing.

**Length.** CLIP reads 77 tokens (about 60 words) at a time; longer prompts are \
encoded in 75-token chunks and joined, so nothing is dropped, but the first chunk \
counts most. Results report `prompt_tokens`. At most 500 characters.

**Emphasis (AUTOMATIC1111 syntax).** `(word:1.3)` weights a word or phrase \
(0.5-1.5 is sensible); `(word)` is 1.1x; `[word]` is 1/1.1x. `BREAK` starts a new \
chunk, to keep two ideas apart: "a cosy cafe interior BREAK rainy street outside".

**LoRAs.** `<lora:name:0.8>` in a prompt applies that LoRA (same as the `loras` \
argument; weight 0-2) and is removed from the text encoded. Call `list_models` for \
names. LoRAs skip the refiner unless you set `use_refinement`.

**Models and samplers.** `model` picks a checkpoint by its `list_models` name (its \
card's steps, CFG and sampler apply unless you give them); another model than the \
default skips the refiner unless you set `use_refinement`. `sampler` takes A1111's \
names, e.g. "DPM++ 2M Karras".

**Sizes.** Use `aspect_ratio` rather than width/height; SDXL was trained on these: \
{_sizes()}. Blog hero: 16:9; social card (Open Graph): 1.91:1, then `export_image` \
preset `og` (1200x630); inline figure: 3:2 or 4:3; portrait or phone: 2:3 or 9:16.

**Workflow.** Draft at `quality` "fast" (or "draft") with a few seeds, pick the best \
seed, rerun it at full quality. Same seed and settings give the same image. \
`guidance_scale` 5-8: higher follows the prompt more literally but looks harsher. For \
small changes use `edit_image` (strength 0.3-0.5) or `vary_image`, not a new prompt.

**Text in images**: SDXL spells badly; leave room and add text in the post instead.
"""
