"""Settings from the environment (prefix ``SDXL_MCP_``) and ``.env``.

Read once by the CLI; every other module receives a ``Settings`` instance.
An invalid value stops start-up with one line naming the variable; a secret
(the Pexels key, the HTTP token) is never quoted in that line. The Pexels key
and base URL are checked here (:func:`check_pexels_key`,
:func:`check_pexels_base_url`), so a key that cannot go into a header or a URL
that is not http(s) stops the server at start-up, not at the first search.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sdxl_mcp.errors import SettingsError

ENV_PREFIX = "SDXL_MCP_"
TINY_MODEL = "tiny-random"
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEFAULT_PEXELS_BASE_URL = "https://api.pexels.com/v1"
# Visible ASCII only: anything else cannot go into a header and would make
# h11 raise an error whose text contains the header value (the key).
_VISIBLE_ASCII_RE = re.compile(r"^[\x21-\x7e]+$")
#: Stock search without a key (the client and the service say it the same way).
PEXELS_KEY_MISSING = "PEXELS_API_KEY is not set: get a free key at pexels.com/api"
#: What is wrong with a key / base URL (the variable's name goes in front).
PEXELS_KEY_INVALID = (
    "contains spaces or characters a key cannot have: copy it again from pexels.com/api."
)
PEXELS_BASE_URL_INVALID = f"must be an http(s) URL such as {DEFAULT_PEXELS_BASE_URL}."
#: Fields whose value never appears in an error line.
_SECRET_FIELDS = frozenset({"pexels_api_key", "http_token"})


def check_pexels_key(key: str) -> str:
    """The key without surrounding whitespace; ValueError unless visible ASCII."""
    key = key.strip()
    if not _VISIBLE_ASCII_RE.match(key):
        raise ValueError(PEXELS_KEY_INVALID)
    return key


def check_pexels_base_url(url: str) -> str:
    """The URL without surrounding whitespace; ValueError unless http(s) with a host."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if not host or parts.scheme not in ("http", "https") or not _VISIBLE_ASCII_RE.match(url):
        raise ValueError(PEXELS_BASE_URL_INVALID)
    return url


def default_output_dir() -> Path:
    return Path(platformdirs.user_data_dir("sdxl-mcp")) / "images"


def default_model_dirs() -> list[Path]:
    return [Path(platformdirs.user_data_dir("sdxl-mcp")) / "models"]


def default_lora_dirs() -> list[Path]:
    return [Path(platformdirs.user_data_dir("sdxl-mcp")) / "loras"]


class Settings(BaseSettings):
    """Every setting (docs/SETTINGS.md); names are the env vars without the prefix."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    base_model: str = Field(
        "stabilityai/stable-diffusion-xl-base-1.0",
        description="hub id, local diffusers folder or .safetensors checkpoint; "
        "'tiny-random' = built-in tiny model",
    )
    refiner_model: str = Field(
        "stabilityai/stable-diffusion-xl-refiner-1.0",
        description="hub id, local folder or .safetensors checkpoint; empty = no refiner",
    )
    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=default_model_dirs,
        description="folders (comma-separated) of SDXL checkpoints and diffusers folders that "
        "requests name in `model`",
    )
    model_cache: int = Field(
        1, ge=0, le=8, description="base models kept in CPU RAM besides the one on the device"
    )
    checkpoint_config: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="diffusers config folders (comma-separated) for single-file checkpoints; "
        "default: the SDXL base and refiner configs built in",
    )
    vae_model: str | None = Field(None, description="optional VAE replacing the base's")
    device: str = Field("auto", description="auto, cuda, cuda:N, mps or cpu")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    fp32_min_vram_gb: float = Field(20.0, gt=0)
    memory: Literal["auto", "full", "balanced", "low", "minimal"] = Field(
        "auto", description="how much of SDXL stays on the card (docs/MEMORY.md)"
    )
    allow_cpu: bool = False
    preload: bool = True
    keep_alive_s: float = Field(
        900.0, ge=-1,
        description="idle seconds before the models leave the device and RAM "
        "(0: after each job; -1: never)",
    )
    output_dir: Path = Field(default_factory=default_output_dir)
    log_dir: Path = Path("logs")
    max_queue: int = Field(8, ge=0, le=1000)
    max_wait_s: float = Field(50.0, gt=0, le=3600)
    generation_timeout_s: float = Field(600.0, gt=0)
    pexels_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SDXL_MCP_PEXELS_API_KEY", "PEXELS_API_KEY")
    )
    pexels_base_url: str = DEFAULT_PEXELS_BASE_URL
    pexels_cache_ttl_s: float = Field(
        300.0, ge=0, description="how long repeated Pexels searches are answered from memory"
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    http_token: SecretStr | None = None
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra Host names (e.g. a DNS name) the HTTP server answers to",
    )
    input_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="folders (comma-separated) whose images tools may read by absolute path",
    )
    url_import: bool = Field(
        True, description="image arguments may be http(s) URLs (fetched under the address rules)"
    )
    url_allow_private: bool = Field(
        False, description="image URLs may lead to loopback and private addresses (intranets)"
    )
    backend: Literal["local", "ray"] = "local"
    ray_address: str = ""
    replicas: int = Field(1, ge=1, le=64, description="Ray backend: engine replicas")
    ray_num_gpus: float | None = Field(
        None, ge=0, description="Ray: GPUs per replica (default: 1 when the cluster has GPUs)"
    )
    ray_num_cpus: float = Field(1.0, ge=0, description="Ray: CPUs reserved per replica")
    ray_torch_threads: int = Field(
        0, ge=0, description="Ray: torch CPU threads per replica (0 = torch's default)"
    )
    warmup: bool = Field(
        True, description="run a short generation after loading so the first request is warm"
    )
    channels_last: bool = Field(True, description="CUDA: UNets in channels-last memory format")
    fuse_qkv: bool = Field(False, description="CUDA: fuse attention QKV projections")
    compile: bool = Field(
        False, description="CUDA: torch.compile the UNets during preload (minutes, once)"
    )
    batch_variations: Literal["auto", "on", "off"] = Field(
        "auto", description="vary_image: the images in one pipeline call (auto: on CUDA only)"
    )
    png_compress_level: int = Field(
        1, ge=0, le=9,
        description="zlib level for saved PNGs (0-3: libpng + zlib-ng, fast; 4-9: Pillow)"
    )
    lora_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=default_lora_dirs,
        description="folders (comma-separated) of SDXL LoRA *.safetensors files",
    )
    draft_lora: str | None = Field(
        None, description="quality=draft: a distilled LoRA (file, or hub id[/weight file])"
    )
    draft_scheduler: Literal["euler-trailing", "lcm", "tcd"] = "euler-trailing"
    draft_steps: int = Field(4, ge=1, le=12, description="quality=draft: denoising steps")
    draft_guidance: float = Field(
        1.0, ge=0.0, le=20.0, description="quality=draft: CFG (<= 1 skips the CFG batch)"
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE_RE.match(value):
            raise ValueError("accepts auto, cpu, mps, cuda or cuda:N")
        return value

    @field_validator("output_dir", "log_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("vae_model", "pexels_api_key", "http_token", "draft_lora", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("pexels_api_key")
    @classmethod
    def _check_pexels_key(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else SecretStr(check_pexels_key(value.get_secret_value()))

    @field_validator("pexels_base_url")
    @classmethod
    def _check_pexels_base_url(cls, value: str) -> str:
        return check_pexels_base_url(value)

    @field_validator("http_allowed_hosts", "input_dirs", "lora_dirs", "checkpoint_config",
                     "model_dirs", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("input_dirs", "lora_dirs", "checkpoint_config", "model_dirs")
    @classmethod
    def _folders(cls, value: list[Path]) -> list[Path]:
        folders = [path.expanduser() for path in value]
        relative = [str(path) for path in folders if not path.is_absolute()]
        if relative:
            raise ValueError(f"folders must be absolute paths (got {relative[0]!r})")
        return [path.resolve() for path in folders]

    @property
    def refiner_enabled(self) -> bool:
        return bool(self.refiner_model.strip())

    @property
    def http_host_is_loopback(self) -> bool:
        if self.http_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.http_host).is_loopback
        except ValueError:
            return False


def _describe(error: dict[str, Any]) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    # A field read through an alias is reported under the alias (an env var name).
    field = field.lower().removeprefix(ENV_PREFIX.lower())
    env_name = ENV_PREFIX + field.upper()
    if field == "pexels_api_key":
        env_name = "SDXL_MCP_PEXELS_API_KEY (or PEXELS_API_KEY)"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    got = error.get("input")
    hidden = isinstance(got, dict) or got is None or field in _SECRET_FIELDS
    got_text = "" if hidden else f" (got {str(got)[:60]!r})"
    return f"{env_name}: {message}{got_text}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning a validation failure into one readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(f"invalid setting {_describe(dict(first))}") from None
