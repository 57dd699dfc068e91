# storecast: `make test` and `make demo` are all a new user needs.
# Both create .venv when missing and (re)install only when pyproject.toml or
# constraints.txt changed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.storecast-installed

.PHONY: test demo bench lint typecheck docs constraints clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/storecast demo

bench: $(STAMP)
	@for script in benchmarks/*.py; do \
		echo "== $$script"; $(BIN)/python $$script || exit $$?; \
	done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Regenerate docs/api.md from the cloud app's OpenAPI document (a test checks it is current).
docs: $(STAMP)
	$(BIN)/python -m storecast.cloud.apidoc docs/api.md

# Re-pin the versions CI tests with (run after changing dependencies in pyproject.toml).
constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^storecast' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .storecast-demo
