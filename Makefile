# Quick start: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUTPUT ?= $(CURDIR)/output

.PHONY: venv test demo lint clean

# Re-install only when the dependency files change; otherwise this is instant.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing sdxl-mcp and its dependencies into $(VENV) (first time: ~2 min)..."
	@$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[engine,dev,ray]'
	@touch $(STAMP)

venv: $(STAMP)

test: venv
	$(PY) -m pytest -q --durations=25

# An MCP client spawns `sdxl-mcp serve` over stdio and generates with the tiny model.
demo: venv
	@SDXL_MCP_BASE_MODEL=tiny-random SDXL_MCP_REFINER_MODEL=tiny-random \
	SDXL_MCP_OUTPUT_DIR=$${SDXL_MCP_OUTPUT_DIR:-$(DEMO_OUTPUT)} \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH \
	$(PY) examples/stdio_client.py "a lighthouse at dawn, oil painting" --seed 7 --size 512

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache output
