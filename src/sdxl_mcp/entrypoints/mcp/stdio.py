"""The stdio transport: serve MCP over stdin/stdout until stdin closes or a signal.

Either way the shutdown is graceful (the server's lifespan stops running work
within a step). stdout belongs to MCP: logs go to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading

import anyio

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.settings import Settings

log = logging.getLogger("sdxl_mcp")


async def serve_stdio(settings: Settings) -> None:
    """stdio until stdin closes or SIGTERM/SIGINT; either way a graceful shutdown.

    The SDK diverts fd 1 to stderr while serving, so stray output from libraries
    cannot corrupt the MCP stream; our logs already go to stderr.
    """
    server = build_server(settings)
    relay = _StdinRelay.install() if os.name == "posix" else None
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for received in signals:
                    log.info("Received %s: shutting down gracefully", received.name)
                    if relay is not None:
                        relay.end()  # the transport's stdin reader sees EOF and returns
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        await server.run_stdio_async()
        log.info("stdin closed: shutting down")
        tg.cancel_scope.cancel()


class _StdinRelay:
    """Feeds the stdio transport from a pipe this process owns, so a signal can end it.

    The SDK reads stdin in a worker thread that cancellation cannot interrupt:
    while the client keeps its end of the pipe open, SIGTERM would wait for the
    client's next line forever. Here a daemon thread copies the real stdin into
    a pipe that replaces fd 0; :meth:`end` makes that thread close the pipe, so
    the transport reads EOF at once, and a daemon thread never blocks exit.
    """

    def __init__(self, source: int, sink: int) -> None:
        self._source, self._sink = source, sink
        self._wake_read, self._wake_write = os.pipe()
        threading.Thread(target=self._copy, name="stdin-relay", daemon=True).start()

    @classmethod
    def install(cls) -> _StdinRelay | None:
        try:
            source = os.dup(0)
            read_end, sink = os.pipe()
            os.dup2(read_end, 0)
            os.close(read_end)
        except OSError as exc:  # no usable stdin: serve it as it is
            log.debug("stdin relay unavailable: %s", exc)
            return None
        return cls(source, sink)

    def _copy(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self._source, self._wake_read], [], [])
                if self._wake_read in ready:
                    return
                data = os.read(self._source, 65536)
                if not data:  # the client closed stdin
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(self._sink, view):]
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                os.close(self._sink)  # EOF for the transport

    def end(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
