# Two commands for a newcomer: `make demo` (serve example models) and `make test` (the whole suite).
# Both create the virtualenv and install the project on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# The deep-model (TorchScript) tests need torch; this pinned release is the CPU build these
# machines hold on disk (a plain `torch` from PyPI is the multi-GB CUDA build). Never in the Lambda.
TORCH  ?= torch==2.13.0

.PHONY: demo serve test lint typecheck unit bench clean package \
        build-ApiFunction build-WorkerFunction build-EventsFunction build-SweeperFunction build-TriggerFunction

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,onnx,local]'
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	touch $(STAMP)

demo: $(STAMP)  ## build example models (first run) and serve them on http://127.0.0.1:8080
	$(BIN)/router demo

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test: $(STAMP)  ## lint, type-check and run every test (unit, functional, end-to-end)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(STAMP)  ## benchmarks: ratios against named baselines
	$(BIN)/python -m benchmarks

ROUTER_ARCH ?= x86_64
LAMBDA_DIR  ?= build/lambda
package: $(STAMP)  ## the Lambda deployment package in build/lambda, size-checked (router package)
	$(BIN)/router package --out $(LAMBDA_DIR) --arch $(ROUTER_ARCH)

# `sam build` (Metadata BuildMethod: makefile) runs build-<LogicalId> with ARTIFACTS_DIR set. All
# five functions run the same package: built once into $(LAMBDA_DIR), then copied.
build-ApiFunction build-WorkerFunction build-EventsFunction build-SweeperFunction build-TriggerFunction: package
	cp -a $(LAMBDA_DIR)/. "$(ARTIFACTS_DIR)/"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis examples/demo .cache
