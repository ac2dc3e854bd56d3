"""``python -m sdxl_mcp``: the ``sdxl-mcp`` command."""

from sdxl_mcp.entrypoints.cli.main import main

raise SystemExit(main())
