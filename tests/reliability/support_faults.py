"""Helpers for the load, fault and shutdown suites (not a test module).

Everything here runs on loopback or in-process: the real tiny SDXL engine,
a raw JSON-RPC speaker for ``sdxl-mcp serve`` as a subprocess, and small
checks on the output folder (no ``.tmp-`` files, PNGs intact, catalog sound).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from PIL import Image

from sdxl_mcp.library import CATALOG_FILENAME, TEMP_PREFIX
from tests.env import server_env

#: The smallest request the schema allows: the cheapest real generation.
SMALL: dict[str, Any] = {"width": 256, "height": 256, "num_inference_steps": 20}
#: A generation long enough to still be running when a test interrupts it.
LARGE: dict[str, Any] = {"width": 1024, "height": 1024, "num_inference_steps": 20}
#: Guards against hangs only (a busy 2-core CPU is slow), never a timing assertion.
LIMIT_S = 120.0


# ------------------------------------------------------------------ results
def text(result: Any) -> str:
    """The first text block of a tool result."""
    return str(result.content[0].text)


def structured(result: Any) -> dict[str, Any]:
    return dict(result.structured_content or {})


async def wait_until(predicate: Callable[[], bool], limit_s: float = LIMIT_S,
                     what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms; fail (not hang) after ``limit_s``."""
    with anyio.fail_after(limit_s):
        while not predicate():
            await anyio.sleep(0.02)


async def finish_job(client: Any, job_id: str, limit_s: float = LIMIT_S) -> Any:
    """Follow a job handle with ``get_generation`` until it is no longer running."""
    with anyio.fail_after(limit_s):
        while True:
            result = await client.call_tool("get_generation", {"job_id": job_id})
            if structured(result).get("status") != "running":
                return result
            await anyio.sleep(0.05)


# ------------------------------------------------------------- output folder
def temp_files(folder: Path) -> list[str]:
    """Leftover temp files (half-written images) in ``folder``."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX))


def image_files(folder: Path) -> list[Path]:
    """Published images (PNG/JPEG) in ``folder``."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.suffix in (".png", ".jpg", ".jpeg") and not p.name.startswith("."))


def sidecar_files(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.suffix == ".json" and not p.name.startswith("."))


def catalog_rows(folder: Path) -> list[dict[str, Any]]:
    """The images table, read with a fresh connection (as a restarted server would)."""
    with contextlib.closing(sqlite3.connect(folder / CATALOG_FILENAME)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT name, path, sha256 FROM images")]


def catalog_integrity(folder: Path) -> str:
    with contextlib.closing(sqlite3.connect(folder / CATALOG_FILENAME)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def assert_images_intact(folder: Path) -> int:
    """Every catalogued image exists, opens as an image, and matches its sha256."""
    rows = catalog_rows(folder)
    for row in rows:
        path = Path(row["path"])
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"], path
        with Image.open(path) as image:
            image.load()
    return len(rows)


# --------------------------------------------------------------- engine seams
def failing_forward(module: Any, error: BaseException, times: int) -> Callable[..., Any]:
    """A ``forward`` that raises ``error`` for its first ``times`` calls, then works."""
    original = module.forward
    calls = {"n": 0}

    def forward(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return original(*args, **kwargs)

    return forward


class UnetGate:
    """Holds the real base UNet at its first step until :meth:`open` (overlap on demand)."""

    def __init__(self, unet: Any) -> None:
        self.original = unet.forward
        self.entered = threading.Event()
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        if not self._open.wait(LIMIT_S):
            raise RuntimeError("UnetGate was never opened")
        return self.original(*args, **kwargs)


# ------------------------------------------------------ stdio server process
class StdioServer:
    """``python -m sdxl_mcp serve`` spoken to over its pipes as raw JSON-RPC.

    Owning the process (not going through an MCP client) gives the test its pid,
    so it can send signals, and lets it close stdin at any moment.
    """

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.output_dir = root / "images"
        self.stderr_path = root / "server-stderr.log"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sdxl_mcp", "serve"],
            env=server_env(root, **{"SDXL_MCP_WARMUP": "false", **env}), cwd=root,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: dict[int, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True, name="stdio-reader").start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self._next_id

    def response(self, request_id: int, limit_s: float = LIMIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + limit_s
        while request_id not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no response to request {request_id}: {self.stderr_tail()}")
            try:
                message = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if message is None:
                raise EOFError(f"the server closed stdout: {self.stderr_tail()}")
            if "id" in message and "method" not in message:
                self._pending[message["id"]] = message
            else:
                self.notifications.append(message)
        return self._pending.pop(request_id)

    def call(self, method: str, params: dict[str, Any] | None = None,
             limit_s: float = LIMIT_S) -> dict[str, Any]:
        return self.response(self.request(method, params), limit_s)

    def initialize(self) -> None:
        answer = self.call("initialize", {
            "protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
            "clientInfo": {"name": "reliability", "version": "0"},
        })
        assert "result" in answer, answer
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def tool(self, name: str, arguments: dict[str, Any],
             limit_s: float = LIMIT_S) -> dict[str, Any]:
        """``tools/call``; returns the CallToolResult (``isError``, ``structuredContent``)."""
        answer = self.call("tools/call", {"name": name, "arguments": arguments}, limit_s)
        assert "result" in answer, answer
        return dict(answer["result"])

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    def wait(self, limit_s: float) -> int:
        return self.process.wait(limit_s)

    def stderr_tail(self, chars: int = 2000) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Test teardown: never leave the process behind."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(LIMIT_S)
        self.close_stdin()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


@contextlib.contextmanager
def stdio_server(root: Path, **env: str) -> Iterator[StdioServer]:
    server = StdioServer(root, **env)
    try:
        server.initialize()
        yield server
    finally:
        server.stop()


def wait_for_denoising(server: StdioServer, job_id: str, limit_s: float = LIMIT_S) -> None:
    """Poll ``get_generation`` until the job reports denoising progress."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        result = server.tool("get_generation", {"job_id": job_id})
        status = result.get("structuredContent", {})
        assert status.get("status") == "running", result
        if "steps)" in status.get("message", ""):
            return
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} never started denoising: {server.stderr_tail()}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------- storage seams
class OsProxy:
    """Stands in for the ``os`` module inside one module: some calls replaced.

    ``monkeypatch.setattr(sdxl_mcp.library.files, "os", OsProxy(...))`` faults the
    file store's own system calls and nothing else in the process.
    """

    def __init__(self, real: Any, **overrides: Callable[..., Any]) -> None:
        self._real = real
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._real, name)


class _FullDiskFile:
    """A file whose write stores half the bytes, then fails as a full disk does."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def write(self, data: bytes) -> int:
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._fh.close()


def disk_fills_on_write(nth: int) -> Callable[..., Any]:
    """An ``os.fdopen`` whose ``nth`` file (1-based) runs out of space mid-write."""
    calls = {"n": 0}

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        fh = os.fdopen(fd, *args, **kwargs)
        calls["n"] += 1
        return _FullDiskFile(fh) if calls["n"] == nth else fh

    return fdopen


def refuse_creating_in(folder: Path, error: OSError) -> Callable[..., Any]:
    """An ``os.open`` that fails to create files in ``folder`` (a read-only folder)."""

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and Path(path).parent == folder:
            raise error
        return os.open(path, flags, *args, **kwargs)

    return open_


def refuse(error: OSError) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


class FullCatalogConnection:
    """A catalog connection whose image INSERT fails as SQLite does on a full disk."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT INTO IMAGES"):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __enter__(self) -> Any:
        return self._conn.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        return self._conn.__exit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)
