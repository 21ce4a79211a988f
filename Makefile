# Every target installs what it needs into .venv first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/metasup up --demo

test: $(STAMP) lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check schemas streams projections tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.reports

# The fault suite, full form (10 worker kills); `make test` runs the short form.
# SEED=n reproduces a run's fault points.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
