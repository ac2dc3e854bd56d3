"""A live server with a small library for the gallery tests (plain HTTP and browser).

Generated images come from the open gated fake backend through the real REST
route; stock photos are written and catalogued the way a Pexels download is
(``save_bytes`` + a ``pexels`` catalog row), without a Pexels server.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

from sdxl_mcp.backend.base import EngineOutput
from sdxl_mcp.library.catalog import CatalogRecord
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service.facade import ImageService
from tests.env import isolated_environ
from tests.fakes import GatedBackend
from tests.helpers_http import LiveServer, serve, tiny_settings

TOKEN = "gallery-token-7f3a9c"
HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script> hostile harbour"
HOSTILE_ALT = 'Lake "at" dawn <script>alert(3)</script>'
TIMEOUT = httpx.Timeout(120.0)


@dataclass
class Library:
    """The live server and the image ids it holds, by role."""

    live: LiveServer
    ids: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def auth(self) -> dict[str, str]:
        token = self.live.settings.http_token
        return {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}


def generate(lib: Library, role: str, prompt: str, seed: int, **extra: Any) -> None:
    body = {"prompt": prompt, "use_pexels": False, "use_generation": True, "width": 256,
            "height": 256, "num_inference_steps": 20, "seed": seed, **extra}
    response = httpx.post(lib.live.url + "/api/media/generate-image", json=body,
                          headers=lib.auth(), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    result = response.json()
    lib.ids[role] = result["image_id"]
    lib.names[role] = Path(result["path"]).name


def _picture(n: int, size: tuple[int, int] = (480, 320)) -> bytes:
    """A JPEG a little nicer than a flat colour (for the screenshots)."""
    image = Image.new("RGB", size, (30 + 40 * (n % 5), 90, 160 - 20 * (n % 4)))
    draw = ImageDraw.Draw(image)
    for i in range(0, size[1], 8):
        draw.line([(0, i), (size[0], i)], fill=(40 + i // 3, 110 + (n * 17) % 90, 180 - i // 4))
    draw.ellipse([size[0] * 0.6, 30, size[0] * 0.6 + 90, 120], fill=(250, 220, 120))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class PaintingBackend(GatedBackend):
    """The open gated fake, painting a simple scene per seed (for the screenshots)."""

    def __init__(self) -> None:
        super().__init__(gate_open=True)

    def generate(self, req: GenerationRequest, seed: int, on_progress: Any = None,
                 cancel: Any = None) -> EngineOutput:
        output = super().generate(req, seed, on_progress, cancel)
        sky = ((seed * 53) % 200 + 30, (seed * 97) % 150 + 60, (seed * 31) % 120 + 120)
        image = Image.new("RGB", output.image.size, sky)
        draw = ImageDraw.Draw(image)
        w, h = image.size
        draw.polygon([(0, h), (w * 0.35, h * 0.45), (w * 0.7, h)], fill=(40, 70 + seed % 60, 50))
        draw.polygon([(w * 0.3, h), (w * 0.75, h * 0.35), (w, h)], fill=(30, 50, 40 + seed % 80))
        draw.ellipse([w * 0.7, h * 0.1, w * 0.85, h * 0.25], fill=(255, 235, 160))
        output.image = image
        return output


def catalogue_stock(store: Any, photo_id: int, alt: str, **parameters: Any) -> CatalogRecord:
    """Save and catalogue a stock photo as a Pexels download does; its record."""
    data = _picture(photo_id)
    path = store.save_bytes(data, name_hint=f"pexels_{photo_id}", suffix=".jpg")
    params = {
        "photographer": "Ana Lens",
        "photographer_url": "https://www.pexels.com/@ana",
        "page_url": f"https://www.pexels.com/photo/{photo_id}/",
        "attribution": f"Photo by Ana Lens on Pexels (photo {photo_id})",
        "alt": alt,
        **parameters,
    }
    record = CatalogRecord(name=path.name, path=path, prompt=alt,
                           sha256=hashlib.sha256(data).hexdigest(), width=480, height=320,
                           source="pexels", source_id=str(photo_id), parameters=params)
    store.catalog.add(record)
    assert record.image_id is not None
    return record


def add_stock(lib: Library, role: str, photo_id: int, alt: str, **parameters: Any) -> None:
    """Catalogue a stock photo as a Pexels download does, under ``role``."""
    record = catalogue_stock(lib.live.service.store, photo_id, alt, **parameters)
    assert record.image_id is not None
    lib.ids[role] = record.image_id
    lib.names[role] = record.name


@contextlib.contextmanager
def library_server(root: Path, *, token: str | None = None, extra_stock: int = 0
                   ) -> Iterator[Library]:
    """Three generated images (one with a hostile prompt), a hostile stock photo and
    ``extra_stock`` plain ones, newest last in this order."""
    overrides: dict[str, Any] = {} if token is None else {"http_token": token}
    settings = tiny_settings(root, **overrides)
    service = ImageService(settings, backend=PaintingBackend())  # type: ignore[arg-type]
    with isolated_environ(), serve(settings, service) as live:
        lib = Library(live)
        generate(lib, "lighthouse", "a red lighthouse on a cliff at dusk", 11,
                 negative_prompt="blurry, low contrast", guidance_scale=6.5)
        generate(lib, "forest", "a green forest in morning fog", 12)
        generate(lib, "hostile", HOSTILE, 13)
        add_stock(lib, "stock", 4242, HOSTILE_ALT, photographer="Ana <b>Bold</b>",
                  photographer_url="javascript:alert(4)")
        for n in range(extra_stock):
            add_stock(lib, f"extra{n}", 5000 + n, f"mountain meadow number {n}")
        yield lib
