"""The HTTP face: the Starlette app, REST + OpenAPI, the gallery."""
