# Two commands for users: `make demo` and `make test`; both install what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/demo.yaml
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test lint imports ui clean

install:
	@bash scripts/install.sh

demo: install
	$(VENV)/bin/xlm run $(CONFIG)

test: install
	@bash scripts/run_tests.sh

lint: install
	$(VENV)/bin/ruff check xlm_core tasks flows xlm_cli tests bench
	$(VENV)/bin/ruff format --check xlm_core tasks flows xlm_cli tests bench

imports: install
	$(VENV)/bin/lint-imports

# Prefect UI and MLflow dashboard for the demo's stores (EXPERIMENT=name for another experiment).
ui: install
	bash infra/local/serve-ui.sh $(or $(EXPERIMENT),demo)

clean:
	rm -rf work .prefect .pytest_cache
