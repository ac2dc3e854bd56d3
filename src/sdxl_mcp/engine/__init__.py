"""Everything that imports torch lives in this package, and only here.

Submodules import torch at module level; this ``__init__`` does not, so that
``import sdxl_mcp.engine.precision`` stays cheap and torch-free.
"""
