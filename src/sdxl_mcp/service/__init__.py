"""The use cases behind every face; no MCP, HTTP or torch (docs/ARCHITECTURE.md)."""
