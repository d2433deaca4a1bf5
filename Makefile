# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install demo test test-fast test-serial test-gpu bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch/torchvision pinned to the builds this machine serves from disk; other versions download gigabytes.
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e .
	touch $(STAMP)

# Tests and benchmarks also need the dev extra (pytest, optuna-dashboard, timm, database drivers).
$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -e '.[dev]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

demo: $(STAMP)
	$(PY) -m sksearch.run studies/quickstart.yaml

# The suite on $(TEST_WORKERS) pytest-xdist workers (4 keep both cores of a 2-core machine busy, 1.5 % idle over a
# run; 8 were no faster and timed trials out), in a new random order each run (pytest-randomly prints the
# seed; --randomly-seed=N repeats an order). worksteal: a worker that runs out takes tests still queued on
# another (with plain load scheduling one worker once ran a whole module of long fault tests alone at the end).
# test-serial runs it in one process; test-fast skips the tests marked slow (real Ray runs, subprocess drivers,
# DDP), for the inner loop.
TEST_WORKERS ?= 4
XDIST := -n $(TEST_WORKERS) --dist worksteal
test: $(DEV_STAMP)
	$(PY) -m pytest -q $(XDIST) --durations=15

test-serial: $(DEV_STAMP)
	$(PY) -m pytest -q -p no:xdist --durations=15

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow"

# The documentation site (MkDocs + Material), built into site/; --strict turns a broken link into a failure.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# GPU-only tests (marker gpu; they skip without CUDA). No install step: a GPU machine without network runs
# them with its own python and the carried wheels, e.g. `make test-gpu PY=python3`.
test-gpu:
	$(PY) -m pytest -q -p no:cacheprovider -m gpu tests/training/test_gpu.py

# Every benchmark, each printing its figures against its baseline (BENCHMARKS.md). The table makers
# (bench/sk_table.py, bench/schedulers/schedulers_table.py, schedulers_fit.py) produce data for them and are
# run by hand. The bench extra adds Syne Tune (MOASHA), which the package itself never imports.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(DEV_STAMP)
	$(PY) -m pip install -e '.[dev,bench]'
	touch $(BENCH_STAMP)

BENCHMARKS := bench_sk_unit bench_complexity bench_dryrun bench_pipeline bench_train_throughput bench_mfu \
              bench_overhead bench_attention schedulers/bench_schedulers schedulers/bench_schedulers_tabular \
              schedulers/moasha_rule schedulers/bench_sk_table
bench: $(BENCH_STAMP)
	for b in $(BENCHMARKS); do $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
