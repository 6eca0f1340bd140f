# Two commands do all set-up on a fresh machine with Python 3.11+:
#   make demo   # virtualenv + the runtime install, pipeline on the embedded sample, recommendations
#   make test   # the same virtualenv + the test tools, the whole test suite
# Both install the versions the suite passed with (sha256-pinned): demo the runtime lock
# requirements/lock.txt (runtime, serve and dask; no test tools), test adds requirements/dev-lock.txt.
#   make test-latest   # the suite against the newest versions pyproject.toml allows (.venv-latest/)
#   make lock          # regenerate requirements/*.txt (keeps pins; UPGRADE=1 takes the newest allowed)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.rekko-runtime
DEV_STAMP := $(VENV)/.rekko-dev
LOCK := requirements/lock.txt
DEV_LOCK := requirements/dev-lock.txt
LATEST_VENV ?= .venv-latest
LOCK_VENV ?= .venv-lock
LOCK_TOOLS ?= pip==26.3 pip-tools==7.7.0
PYTEST_ARGS ?= -q -n 3 --dist loadscope

.PHONY: install demo test test-latest lock bench bench-scale docker-check clean

# The locked versions need Python 3.11+ (numpy, pandas and scipy have left 3.10 behind).
CHECK_PYTHON = $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the lock (requirements/) \
needs Python 3.11+, $(PYTHON) is " + sys.version.split()[0] + ": make PYTHON=python3.11 ...")'

# What the demo (and rekko itself) needs: the runtime lock, then rekko without resolving anything else.
$(RUNTIME_STAMP): pyproject.toml $(LOCK)
	@$(CHECK_PYTHON)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(RUNTIME_STAMP)

# The test tools on top (dev-lock.txt is lock.txt's versions plus the dev extra).
$(DEV_STAMP): $(RUNTIME_STAMP) $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	@touch $(DEV_STAMP)

install: $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/rekko demo

test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# No lock: every dependency at the newest version pyproject.toml allows, in a venv of its own, so
# .venv keeps the locked versions. It reinstalls on every run to pick up new releases.
test-latest:
	@test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev,serve,dask]'
	@$(LATEST_VENV)/bin/python -c 'import importlib.metadata as m; print("test-latest:", ", ".join( \
	  f"{p} {m.version(p)}" for p in ("numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "numba", "dask")))'
	$(LATEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

# dev-lock.txt: runtime + serve + dask + dev (make test, .ci/run); lock.txt: runtime + serve + dask (make demo, the
# Docker image); bench-lock.txt: dev-lock.txt + bench (make bench-scale). The last two are constrained
# to dev-lock.txt, so every file pins the versions the suite ran with. Pins already in a file are
# kept unless pyproject.toml rules them out; UPGRADE=1 re-resolves everything to the newest allowed.
# pip-compile uses pip's configuration (index, mirrors) and writes none of it into the files.
LOCK_ARGS = --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links --no-emit-trusted-host $(if $(UPGRADE),--upgrade)
PIP_COMPILE = CUSTOM_COMPILE_COMMAND='make lock' $(LOCK_VENV)/bin/pip-compile $(LOCK_ARGS)
lock:
	@$(CHECK_PYTHON)
	@test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet $(LOCK_TOOLS)
	$(PIP_COMPILE) --extra dev --extra serve --extra dask -o requirements/dev-lock.txt pyproject.toml
	$(PIP_COMPILE) --extra serve --extra dask -c requirements/dev-lock.txt -o requirements/lock.txt pyproject.toml
	$(PIP_COMPILE) --extra dev --extra serve --extra dask --extra bench -c requirements/dev-lock.txt \
	  -o requirements/bench-lock.txt pyproject.toml

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_core.py

bench-scale: $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/bench-lock.txt
	$(BIN)/python benchmarks/bench_scale.py

docker-check:
	bash .ci/docker.sh

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(LOCK_VENV) matrix/*.pkl matrix/manifest.json pred data/*_upd.parquet data/int_coef.parquet data/movies_rd.parquet
