"""sdxl-mcp: an MCP tool server that gives LLM agents images.

Importing this package stays light: torch and diffusers load lazily inside
``sdxl_mcp.engine`` only when a generation backend is created.
"""

__version__ = "0.1.0"
