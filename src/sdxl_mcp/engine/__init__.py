"""Everything that imports torch lives in this package, and only here.

Submodules import torch at module level; this ``__init__`` does not, so that
``import sdxl_mcp.engine.precision`` stays cheap and torch-free. It only keeps
a third-party notice off stderr before any submodule imports diffusers.
"""

from __future__ import annotations

import logging


class _TorchvisionNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


# transformers announces, once per process, that its image processors fall back to
# Pillow without torchvision. SDXL uses none of them, and hosts show every stderr
# line to the person as an error; stderr carries the server's own lines only.
logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionNotice())
