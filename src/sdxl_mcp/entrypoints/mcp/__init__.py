"""The MCP face: build_server, the stdio transport, the tools, the App."""
