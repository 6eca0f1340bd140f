# Two commands do all set-up on a fresh machine with Python 3.10+:
#   make demo   # virtualenv + install, pipeline on the embedded sample, recommendations
#   make test   # virtualenv + install with test extras, the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rekko-installed

.PHONY: install demo test bench bench-scale docker-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,serve,dask]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rekko demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadscope

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py

bench-scale: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_scale.py

docker-check:
	bash .ci/docker.sh

clean:
	rm -rf $(VENV) matrix/*.pkl matrix/manifest.json pred data/*_upd.parquet data/int_coef.parquet data/movies_rd.parquet
