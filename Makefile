# Two entry points for a fresh machine: `make run` and `make test`; `make check` for
# day-to-day work (lint and unit tests, no workflow runs, a few minutes).
# Both create .venv and install the pinned requirements the first time.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all
CONFIG ?= config.yaml
# One `gpu` unit per visible NVIDIA device; on a CPU-only machine no limit is set,
# so jobs that declare gpu=1 run side by side on the CPU cores.
GPUS := $(shell nvidia-smi -L 2>/dev/null | wc -l)
GPU_RESOURCES := $(if $(filter-out 0,$(GPUS)),--resources gpu=$(GPUS),)

.PHONY: install install-slurm run smoke check test bench lint dry-run clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# The SLURM executor plugin, only for cluster runs (workflow/profiles/slurm).
install-slurm: install
	$(VENV)/bin/pip install -q -r requirements-slurm.txt

run: install
	$(PY) -m prunescope.configcheck $(CONFIG)
	$(VENV)/bin/snakemake --cores $(CORES) $(GPU_RESOURCES) --configfile $(CONFIG)

smoke: install
	$(VENV)/bin/snakemake --cores $(CORES) --configfile configs/smoke.yaml

dry-run: install
	$(PY) -m prunescope.configcheck $(CONFIG)
	$(VENV)/bin/snakemake -n --configfile $(CONFIG)

# The fast lane: every check but the ones that run Snakemake, SLURM or a browser.
check: lint
	$(PY) -m pytest -q -m "not slow and not workflow and not slurm and not browser"

# The whole suite, as CI runs it.
test: install
	$(PY) -m pytest -q

# Benchmarks against in-run references; tables on stdout, JSON in results/bench/.
bench: install
	$(PY) -m bench $(BENCH)

lint: install
	$(VENV)/bin/ruff check src scripts tests bench
	$(VENV)/bin/ruff format --check src scripts tests bench
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results/* .snakemake
