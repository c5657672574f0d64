# The two set-up commands of the README: `make run` and `make test`. Both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@# setuptools warns on every editable install of a package-dir mapping ("Editable
	@# installation ... !!"): nothing to act on, and it reads like a failure.
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: the Textual app (a headless demo run with `make run ARGS="run ..."`).
run: $(STAMP)
	$(BIN)/prunetui $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check core tui tests bench
	$(BIN)/mypy core tui

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit-test loop: the unit and CLI groups (no app, no killed processes); CI runs `make test`.
test-fast: lint
	$(BIN)/python -m pytest -m "unit or cli" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
