# envstore: `make serve` and `make test` are all a fresh machine needs (Python 3.11 on PATH).
PYTHON ?= python3.11
VENV := .venv
UV := $(VENV)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never

HUB_PROXY := tests/support/hub_proxy

.PHONY: serve install dev test lint bench clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r .ci/uv-bootstrap.txt

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --no-dev
	@touch $@

$(VENV)/.dev-installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra jupyter
	@touch $@ $(VENV)/.installed

# configurable-http-proxy from npm, for the JupyterHub integration tests only.
$(HUB_PROXY)/node_modules/.installed: $(HUB_PROXY)/package.json $(HUB_PROXY)/package-lock.json
	npm ci --prefix $(HUB_PROXY) --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

serve: install
	$(VENV)/bin/envstore serve

lint: dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src benchmarks
	$(VENV)/bin/lint-imports

# Two pytest workers (pytest-xdist), a test file each at a time: module fixtures (a browser, a
# cluster) stay in one process. PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2

test: lint $(HUB_PROXY)/node_modules/.installed
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: dev
	$(VENV)/bin/python benchmarks/pypi_build.py
	$(VENV)/bin/python benchmarks/pypi_build.py --no-archives
	$(VENV)/bin/python benchmarks/conda_build.py
	$(VENV)/bin/python benchmarks/conda_build.py --packages 120 --files 800
	$(VENV)/bin/python benchmarks/conda_solve.py
	$(VENV)/bin/python benchmarks/api_reads.py
	$(VENV)/bin/python benchmarks/login_flood.py
	$(VENV)/bin/python benchmarks/ui_pages.py
	$(VENV)/bin/python benchmarks/policy_check.py
	$(VENV)/bin/python benchmarks/api_load.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(HUB_PROXY)/node_modules
