"""Logging set-up: stderr and LOG_DIR/sdxl_mcp.log, never stdout, secrets masked.

In stdio mode stdout belongs to MCP, so every handler here writes to stderr
or the log file. A filter replaces configured secrets (the Pexels key, the
HTTP token) wherever they would appear in a formatted line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path

LOG_FILE_NAME = "sdxl_mcp.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MASK = "***"


class SecretMaskingFilter(logging.Filter):
    """Rewrites records so no configured secret reaches a handler."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, _MASK)
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, masked, so handlers do not re-render it.
            text = logging.Formatter().formatException(record.exc_info)
            for secret in self.secrets:
                text = text.replace(secret, _MASK)
            record.exc_text = text
            record.exc_info = None
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(
    log_dir: Path | None, *, level: int = logging.INFO, secrets: Iterable[str] = ()
) -> Path | None:
    """Configure the root logger once; returns the log file path if one is open."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sdxl_mcp", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    masker = SecretMaskingFilter(secrets)
    formatter = logging.Formatter(_FORMAT)

    stderr = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [stderr]
    log_path: Path | None = None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / LOG_FILE_NAME
            handlers.append(logging.FileHandler(log_path, encoding="utf-8"))
        except OSError as exc:
            log_path = None
            sys.stderr.write(f"warning: cannot write logs to {log_dir} ({exc.strerror}); "
                             "logging to stderr only\n")
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(masker)
        handler._sdxl_mcp = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    # Third-party chatter stays at warnings.
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return log_path
