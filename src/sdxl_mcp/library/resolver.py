"""The one way an image argument is read: ``image_id``, ``image://`` URI or allowed path.

(URLs and data URIs are brought into the library first, by ``library.outside_images``,
and then read here by their image_id.)

Guarantees (docs/LIBRARY.md):

* an argument is an ``image_id``, an ``image://{image_id}`` URI (the older
  ``image://<file name>`` too), an absolute path of a catalogued file inside
  OUTPUT_DIR, or an absolute path of a file under one of INPUT_DIRS;
* paths are compared after resolving symlinks, so a link leading out of those
  folders, ``..`` traversal or a relative path is refused, and so is a
  catalogued name whose file was replaced by a symlink; nothing outside them
  is ever opened;
* the file must be an image Pillow can identify, at most MAX_PIXELS (checked
  from the header, without decoding: a decompression bomb is refused cheaply);
* every refusal is a ``BadRequest`` (or ``NotFound`` for a well-formed id or
  name the catalog does not know) whose sentence names the argument and what
  it accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sdxl_mcp.errors import BadRequest, NotFound
from sdxl_mcp.library.catalog import CatalogRecord
from sdxl_mcp.library.store import ImageStore

IMAGE_URI_PREFIX = "image://"
IMAGE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{6,80}$")
#: Sources over this many pixels are refused (a 40 MP photo is already huge).
MAX_PIXELS = 40_000_000
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


@dataclass(frozen=True)
class ResolvedImage:
    """A readable image file; ``record`` is its catalog row (None for INPUT_DIRS files)."""

    path: Path
    record: CatalogRecord | None
    width: int
    height: int
    format: str | None

    @property
    def image_id(self) -> str | None:
        return self.record.image_id if self.record is not None else None


class ImageResolver:
    """Turns image arguments into files of this server's library or allowed folders."""

    def __init__(self, store: ImageStore, input_dirs: list[Path] | tuple[Path, ...] = ()) -> None:
        self.store = store
        self.input_dirs = tuple(Path(d).expanduser().resolve() for d in input_dirs)

    def accepts(self, argument: str) -> str:
        folders = "OUTPUT_DIR" + (" or SDXL_MCP_INPUT_DIRS" if self.input_dirs else "")
        return (f"{argument} must be an image_id, an image:// URI, an absolute path of an "
                f"image inside {folders}, an http(s) URL or a data:image/png;base64 URI")

    def resolve(self, reference: str, argument: str = "image") -> ResolvedImage:
        """The image ``reference`` names; raises BadRequest / NotFound naming ``argument``."""
        if not isinstance(reference, str) or not reference.strip() or "\x00" in reference:
            raise BadRequest(f"{self.accepts(argument)} (got {_short(reference)}).")
        ref = reference.strip()
        if ref.startswith(IMAGE_URI_PREFIX):
            record = self._catalogued(ref[len(IMAGE_URI_PREFIX):], argument, reference)
            return self._checked(self._library_file(record, argument), record, argument)
        if ref.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", ref):
            return self._from_path(ref, argument)
        record = self._catalogued(ref, argument, reference)
        return self._checked(self._library_file(record, argument), record, argument)

    # -- internals -----------------------------------------------------------

    def _catalogued(self, key: str, argument: str, original: str) -> CatalogRecord:
        if IMAGE_ID_RE.match(key):
            record = self.store.catalog.get_by_image_id(key)
            if record is not None:
                return record
        if _FILE_NAME_RE.match(key) and ".." not in key:
            record = self.store.catalog.get_by_name(key)
            if record is not None:
                return record
        if IMAGE_ID_RE.match(key) or _FILE_NAME_RE.match(key):
            raise NotFound(
                f"{argument}: no image {key!r} on this server; use an image_id from "
                "find_images or a Result."
            )
        raise BadRequest(f"{self.accepts(argument)} (got {_short(original)}).")

    def _library_file(self, record: CatalogRecord, argument: str) -> Path:
        """A catalogued image's file: a plain file in OUTPUT_DIR (a planted symlink is refused)."""
        path = self.store.resolve_name(record.name)
        if path is None:
            raise NotFound(f"{argument}: the file of this image is gone ({record.name}).")
        return path

    def _from_path(self, ref: str, argument: str) -> ResolvedImage:
        try:
            path = Path(ref).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(f"{argument}: the file {_short(ref)} does not exist.") from None
        output_dir = self.store.output_dir
        if path.is_relative_to(output_dir):
            record = (self.store.catalog.get_by_name(path.name)
                      if path.parent == output_dir else None)
            if record is None:
                raise BadRequest(
                    f"{argument}: {_short(ref)} is not an image this server saved; "
                    "use an image_id from find_images."
                )
            return self._checked(path, record, argument)
        if any(path.is_relative_to(folder) for folder in self.input_dirs):
            return self._checked(path, None, argument)
        raise BadRequest(f"{self.accepts(argument)}; {_short(ref)} is outside them.")

    def _checked(self, path: Path, record: CatalogRecord | None, argument: str) -> ResolvedImage:
        if not path.is_file():
            raise NotFound(f"{argument}: the file of this image is gone ({path.name}).")
        try:
            with Image.open(path) as image:
                width, height, image_format = image.width, image.height, image.format
        except Image.DecompressionBombError:
            raise BadRequest(
                f"{argument}: the image is too large (over {MAX_PIXELS // 1_000_000} megapixels)."
            ) from None
        except Exception:  # Pillow raises many kinds for "not an image"
            raise BadRequest(f"{argument}: {path.name} is not an image file.") from None
        if width * height > MAX_PIXELS:
            raise BadRequest(
                f"{argument}: the image is {width}x{height}, over "
                f"{MAX_PIXELS // 1_000_000} megapixels; use a smaller one."
            )
        return ResolvedImage(path, record, width, height, image_format)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
