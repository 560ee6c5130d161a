# The two commands: `make demo` and `make test`. Each sets up .venv once (the stamp file is
# redone only when pyproject.toml changes), then runs its job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# No telemetry, no update checks, wherever Flower or Ray may run.
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export RAY_USAGE_STATS_ENABLED := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel this machine holds. A bare `torch` pulls CUDA builds.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/privagg simulate --mode all --clients 20 --params 10000 --dropout 0.2 --seed 1 --format table
	$(BIN)/privagg audit --quick --out report

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
