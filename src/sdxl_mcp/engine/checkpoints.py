"""Single-file SDXL checkpoints loaded offline, with configs that ship in the package.

Guarantees (tests/engine/test_checkpoints.py; docs/MODELS.md):

* :func:`config_folder` is the diffusers config folder ``from_single_file``
  takes the components' configs and tokenizers from: a folder of
  SDXL_MCP_CHECKPOINT_CONFIG whose ``model_index.json`` names the pipeline
  (base or refiner), else the built-in one, written once into the user cache
  from the configs in ``engine/configs`` and CLIP's BPE vocabulary (no hub, no
  weights);
* :func:`load_single_file` checks the file first (``library.checkpoints``:
  safetensors only, SDXL by its keys) and loads it with
  ``from_single_file(config=..., local_files_only=True)``, so nothing is
  downloaded and the weights are the file's.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, Literal

import platformdirs

from sdxl_mcp.library.checkpoints import check_checkpoint

log = logging.getLogger(__name__)

Kind = Literal["base", "refiner"]
CONFIG_DIR = Path(__file__).parent / "configs"
#: Bump when the built-in folders change, so cached copies are rewritten.
BUILTIN_VERSION = "v1"
PIPELINES: dict[Kind, str] = {"base": "StableDiffusionXLPipeline",
                              "refiner": "StableDiffusionXLImg2ImgPipeline"}

_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}
_TOKENIZER = ["transformers", "CLIPTokenizer"]
_NONE = [None, None]


def config_folder(kind: Kind, configured: list[Path]) -> Path:
    """The config folder for a ``kind`` checkpoint: a configured one for it, else built-in."""
    for folder in configured:
        try:
            index = json.loads((folder / "model_index.json").read_text())
        except (OSError, ValueError):
            continue
        if index.get("_class_name") == PIPELINES[kind]:
            return folder
    return builtin_config(kind)


def load_single_file(cls: Any, path: Path, kind: Kind, setting: str, configured: list[Path],
                     **kwargs: Any) -> Any:
    """``cls.from_single_file`` of a checked SDXL checkpoint, offline."""
    check_checkpoint(path, "sdxl-base" if kind == "base" else "sdxl-refiner", setting)
    config = config_folder(kind, configured)
    log.info("Loading the single-file checkpoint %s (configs: %s)", path, config)
    # config must be a str: diffusers refuses a Path there.
    return cls.from_single_file(str(path), config=str(config), local_files_only=True, **kwargs)


@cache
def builtin_config(kind: Kind) -> Path:
    """The built-in SDXL ``kind`` config folder (configs and tokenizers, no weights)."""
    root = Path(platformdirs.user_cache_dir("sdxl-mcp")) / f"checkpoint-config-{BUILTIN_VERSION}"
    folder = root / kind
    if (folder / "model_index.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=root))
    try:
        _write_config(scratch, kind)
        try:
            os.replace(scratch, folder)  # atomic: a half-written folder is never used
        except OSError:  # another process wrote it first
            if not (folder / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("Wrote the built-in SDXL %s config folder to %s", kind, folder)
    return folder


def _write_config(folder: Path, kind: Kind) -> None:
    def put(relative: str, data: dict[str, Any]) -> None:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=1))

    def component(name: str) -> dict[str, Any]:
        return dict(json.loads((CONFIG_DIR / f"{name}.json").read_text()))

    index: dict[str, Any] = {
        "_class_name": PIPELINES[kind], "_diffusers_version": "0.42.1",
        "force_zeros_for_empty_prompt": kind == "base", "add_watermarker": None,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"] if kind == "base" else _NONE,
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": _TOKENIZER if kind == "base" else _NONE,
        "tokenizer_2": _TOKENIZER,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if kind == "refiner":
        index["requires_aesthetics_score"] = True
    put("model_index.json", index)
    put("scheduler/scheduler_config.json", _SCHEDULER)
    put("unet/config.json", {"_class_name": "UNet2DConditionModel",
                             **component(f"sdxl_{kind}_unet")})
    put("vae/config.json", component("sdxl_vae"))
    put("text_encoder_2/config.json", component("sdxl_text_encoder_2"))
    if kind == "base":
        put("text_encoder/config.json", component("sdxl_text_encoder"))
        clip_tokenizer(pad_token="<|endoftext|>").save_pretrained(folder / "tokenizer")
    clip_tokenizer(pad_token="!").save_pretrained(folder / "tokenizer_2")


def clip_tokenizer(pad_token: str) -> Any:
    """CLIP's tokenizer (both SDXL encoders use its vocabulary; they differ in padding)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocabulary()
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token=pad_token,
                         model_max_length=77)


@cache
def _clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary as OpenAI builds it from the BPE merges: the 256 byte
    characters, the same with ``</w>``, one token per merge, then the two specials."""
    lines = gzip.decompress((CONFIG_DIR / "clip_bpe_simple_vocab_16e6.txt.gz").read_bytes())
    text = lines.decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in text[1:49152 - 256 - 2 + 1]]
    letters = byte_alphabet()
    tokens = letters + [c + "</w>" for c in letters] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, [(a, b) for a, b in merges]


def byte_alphabet() -> list[str]:
    """CLIP's byte-level alphabet: 256 printable stand-ins for the 256 bytes, in order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]
