"""Web-ready exports: presets, the file naming rule, the ``max_bytes`` search, writing.

Guarantees (docs/LIBRARY.md "Web-ready export"): the file name holds every parameter that
changes the bytes and nothing else, so the same export asked twice is the same (cached) file;
writing is atomic and leaves nothing behind on failure (``StorageError``); a ``max_bytes``
that cannot be met is a ``BadRequest`` and writes nothing; the generation parameters stay in
the file (details: docs/ARCHITECTURE.md "Guarantees").

Blocking (Pillow, disk); the service runs it in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from sdxl_mcp.errors import BadRequest, StorageError
from sdxl_mcp.library.alt_text import MAX_ALT, alt_from_prompt, clip_words
from sdxl_mcp.library.files import FileStore
from sdxl_mcp.library.infotext import PARAMETERS_CHUNK
from sdxl_mcp.library.resolver import ResolvedImage
from sdxl_mcp.library.transforms import DEFAULT_QUALITY, OutputFormat, Transform, encode, resize
from sdxl_mcp.schemas import EXPORT_PRESETS, ExportRequest, ExportResult
from sdxl_mcp.schemas.export import MAX_SIDE

log = logging.getLogger(__name__)

__all__ = [
    "EXPORTS_DIR", "Encoded", "Exporter", "encode_within", "export_name", "html_img",
    "markdown_img", "metadata_options", "read_user_comment", "target_transform",
]

EXPORTS_DIR = "exports"
EXTENSIONS: dict[str, str] = {"webp": "webp", "jpeg": "jpg", "png": "png"}
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"
_KEY_RE = re.compile(r"[^A-Za-z0-9_-]+")


# ------------------------------------------------------------------ sizes and names
def target_transform(request: ExportRequest) -> Transform:
    """The resize/encode the request asks for (width/height replace the preset's size)."""
    if request.width is not None or request.height is not None:
        width, height = request.width, request.height
    else:
        width, height = EXPORT_PRESETS[request.preset] or (None, None)
    return Transform(request.format, width, height, request.fit, request.quality)


def output_size(request: ExportRequest, width: int, height: int) -> tuple[int, int]:
    """The exported size for a ``width`` x ``height`` source; BadRequest if a side would
    pass MAX_SIDE because one given side scales the other."""
    size = target_transform(request).size_for(width, height)
    for given, other, value in (("width", "height", size[1]), ("height", "width", size[0])):
        if getattr(request, given) is not None and getattr(request, other) is None \
                and value > MAX_SIDE:
            raise BadRequest(f"{given}: the {other} would be {value} px, over {MAX_SIDE}; "
                             f"give both width and height or a smaller {given}.")
    return size


def export_name(key: str, request: ExportRequest) -> str:
    """``<key>.<label>[.contain][.q<N>][.max<N>].<ext>``: the rule in the module doc."""
    w, h = request.width, request.height
    if w is not None and h is not None:
        label = f"{w}x{h}"
    elif w is not None:
        label = f"{w}w"
    elif h is not None:
        label = f"{h}h"
    else:
        label = request.preset
    two_sides = (w is not None and h is not None) or (
        w is None and h is None and EXPORT_PRESETS[request.preset] is not None)
    parts = [key, label]
    if request.fit == "contain" and two_sides:
        parts.append("contain")
    if request.format != "png":
        if request.quality != DEFAULT_QUALITY:
            parts.append(f"q{request.quality}")
        if request.max_bytes is not None:
            parts.append(f"max{request.max_bytes}")
    return ".".join(parts) + "." + EXTENSIONS[request.format]


def source_key(resolved: ResolvedImage) -> str:
    """The image_id, or for an INPUT_DIRS file a key from its stem and content hash."""
    if resolved.image_id:
        return resolved.image_id
    digest = hashlib.sha256(resolved.path.read_bytes()).hexdigest()[:12]
    stem = _KEY_RE.sub("_", resolved.path.stem).strip("_-")[:40] or "image"
    return f"file-{stem}-{digest}"


# ------------------------------------------------------------------ encoding
def metadata_options(format: OutputFormat, infotext: str | None,
                     icc_profile: bytes | None = None) -> dict[str, Any]:
    """Pillow save options that keep ``infotext`` (and the ICC profile) in ``format``."""
    options: dict[str, Any] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if not infotext:
        return options
    if format == "png":
        info = PngInfo()
        info.add_text(PARAMETERS_CHUNK, infotext)
        options["pnginfo"] = info
    else:
        exif = Image.Exif()
        exif.get_ifd(EXIF_IFD)[USER_COMMENT] = _UNICODE_PREFIX + infotext.encode("utf-16-be")
        options["exif"] = exif.tobytes()
    return options


def read_user_comment(image: Image.Image) -> str | None:
    """The EXIF UserComment of a JPEG or WebP (A1111's encodings), else None."""
    raw = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes | bytearray):
        return None
    prefix, body = bytes(raw[:8]), bytes(raw[8:])
    if prefix == _UNICODE_PREFIX:
        return body.decode("utf-16-be", errors="replace")
    return body.decode("utf-8" if prefix.startswith(b"ASCII") else "latin-1", errors="replace")


@dataclass(frozen=True)
class Encoded:
    data: bytes
    quality: int | None  # None for png


def encode_within(image: Image.Image, format: OutputFormat, quality: int,
                  max_bytes: int | None, options: dict[str, Any]) -> Encoded:
    """``image`` encoded at ``quality``, or at the best lower quality whose file fits
    ``max_bytes`` (binary search); BadRequest naming the smallest size if none fits."""
    data = encode(image, format, quality, **options)
    if max_bytes is None or len(data) <= max_bytes:
        return Encoded(data, None if format == "png" else quality)
    size = f"{image.width}x{image.height}"
    if format == "png":
        raise BadRequest(
            f"max_bytes: the PNG at {size} is {len(data):,} bytes, over max_bytes "
            f"{max_bytes:,}, and PNG has no quality to lower; use webp or jpeg, a smaller "
            "size, or a larger max_bytes.")
    smallest, smallest_q = len(data), quality
    best: Encoded | None = None
    low, high = 1, quality - 1
    while low <= high:
        mid = (low + high) // 2
        candidate = encode(image, format, mid, **options)
        if len(candidate) <= max_bytes:
            best, low = Encoded(candidate, mid), mid + 1
        else:
            if len(candidate) < smallest:
                smallest, smallest_q = len(candidate), mid
            high = mid - 1
    if best is None:
        raise BadRequest(
            f"max_bytes: the smallest {format} at {size} is {smallest:,} bytes (quality "
            f"{smallest_q}), over max_bytes {max_bytes:,}; use a smaller size or a larger "
            "max_bytes.")
    return best


def _prepared(path: Path) -> tuple[Image.Image, str | None, bytes | None]:
    """The source upright, in a mode the encoders take; its infotext and ICC profile."""
    with Image.open(path) as opened:
        infotext = opened.info.get(PARAMETERS_CHUNK)
        icc = opened.info.get("icc_profile")
        image = ImageOps.exif_transpose(opened)
        image.load()
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return image, infotext if isinstance(infotext, str) else None, icc


# ------------------------------------------------------------------ snippets
def html_img(src: str, alt: str, width: int, height: int) -> str:
    """``<img>`` with every attribute escaped (``html.escape(quote=True)``)."""
    e = lambda value: html.escape(str(value), quote=True)  # noqa: E731
    return (f'<img src="{e(src)}" alt="{e(alt)}" width="{width}" height="{height}" '
            'loading="lazy">')


def markdown_img(src: str, alt: str) -> str:
    """``![alt](src)``: alt one line with ``\\ [ ] < >`` escaped; an odd src in ``<...>``."""
    text = re.sub(r"\s+", " ", alt).strip()
    text = re.sub(r"([\\\[\]<>])", r"\\\1", text)
    if re.search(r"[\s()<>]", src):
        src = "<" + re.sub(r"([<>\\])", r"\\\1", src) + ">"
    return f"![{text}]({src})"


def default_alt(resolved: ResolvedImage) -> str:
    """Pexels alt text, else the prompt without style tags, else a neutral phrase."""
    record = resolved.record
    if record is None or record.source in ("url", "upload"):  # nothing says what it shows
        return "Image"
    if record.source == "pexels":
        alt = clip_words(str(record.parameters.get("alt") or ""), MAX_ALT)
        photographer = str(record.parameters.get("photographer") or "").strip()
        return alt or (f"Photo by {photographer}" if photographer else "Stock photo")
    return alt_from_prompt(record.prompt) or "Generated image"


def attribution_for(resolved: ResolvedImage) -> str | None:
    record = resolved.record
    if record is None or record.source != "pexels":
        return None
    stored = record.parameters.get("attribution")
    if stored:
        return str(stored)
    photographer = str(record.parameters.get("photographer") or "an unknown photographer")
    return f"Photo by {photographer} on Pexels"


# ------------------------------------------------------------------ the exporter
class Exporter:
    """Writes exports into ``<output_dir>/exports`` (created on first use)."""

    def __init__(self, output_dir: Path) -> None:
        self.folder = Path(output_dir) / EXPORTS_DIR
        self._files: FileStore | None = None

    @property
    def files(self) -> FileStore:
        if self._files is None:
            files = FileStore(self.folder)  # creates the folder, proves it writable
            files.cleanup_temp_files(min_age_s=3600)  # a crash's leftovers, not a peer's
            self._files = files
        return self._files

    def export(self, resolved: ResolvedImage, request: ExportRequest) -> ExportResult:
        """The export ``request`` asks for, made or found; the result with its snippets."""
        output_size(request, resolved.width, resolved.height)  # refuses a side over MAX_SIDE
        path = self.files.output_dir / export_name(source_key(resolved), request)
        facts = self._existing(path)
        cached = facts is not None
        if facts is None:
            facts = self._make(resolved, request, path)
        alt = re.sub(r"\s+", " ", request.alt).strip() if request.alt else default_alt(resolved)
        src = str(path)
        return ExportResult(
            image_id=resolved.image_id, path=src, uri=path.as_uri(),
            width=int(facts["width"]), height=int(facts["height"]), format=request.format,
            bytes=int(facts["bytes"]), quality=facts["quality"], alt=alt,
            html=html_img(src, alt, int(facts["width"]), int(facts["height"])),
            markdown=markdown_img(src, alt), attribution=attribution_for(resolved),
            cached=cached,
        )

    def _existing(self, path: Path) -> dict[str, Any] | None:
        """The sidecar facts of an export already on disk, if file and sidecar agree."""
        try:
            facts = json.loads(_sidecar(path).read_text("utf-8"))
            if isinstance(facts, dict) and facts.get("bytes") == path.stat().st_size:
                return facts
        except (OSError, ValueError):
            pass
        return None

    def _make(self, resolved: ResolvedImage, request: ExportRequest, path: Path
              ) -> dict[str, Any]:
        transform = target_transform(request)
        image, infotext, icc = _prepared(resolved.path)
        sized = resize(image, transform)
        fmt: OutputFormat = request.format
        if fmt == "jpeg" and icc and image.mode in ("L", "LA"):
            icc = None  # a grayscale profile does not fit the RGB JPEG made of it
        encoded = encode_within(sized, fmt, request.quality, request.max_bytes,
                                metadata_options(fmt, infotext, icc))
        facts = {"width": sized.width, "height": sized.height, "format": fmt,
                 "quality": encoded.quality, "bytes": len(encoded.data),
                 "source": resolved.image_id or str(resolved.path)}
        self._publish(path, encoded.data, facts)
        log.info("Exported %s (%dx%d, %d bytes, quality %s)", path.name, sized.width,
                 sized.height, len(encoded.data), encoded.quality)
        return facts

    def _publish(self, path: Path, data: bytes, facts: dict[str, Any]) -> None:
        """Sidecar, then the file: each a fsynced temp renamed over its name."""
        temps: list[Path] = []
        try:
            text = json.dumps(facts, indent=2, ensure_ascii=False) + "\n"
            for target, payload, suffix in ((_sidecar(path), text.encode(), ".json"),
                                            (path, data, path.suffix)):
                tmp = self.files._write_temp(payload, suffix)
                temps.append(tmp)
                os.replace(tmp, target)
                temps.remove(tmp)
        except Exception as exc:
            for tmp in temps:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise StorageError(f"Could not write the export {path.name}: "
                               f"{getattr(exc, 'strerror', None) or exc}. {StorageError.HINT}"
                               ) from exc
        self.files._sync_dir()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")

