"""The faces: parse, call the service, shape the answer (docs/ARCHITECTURE.md)."""
