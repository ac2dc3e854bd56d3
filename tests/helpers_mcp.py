"""What MCP tests share: the tool names the server publishes."""

from __future__ import annotations

TOOLS = {"generate_image", "get_generation", "cancel_generation", "search_stock_image",
         "gpu_status", "find_images", "export_image", "edit_image", "vary_image",
         "list_models"}
