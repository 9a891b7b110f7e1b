# Everything runs in a local virtual environment made from the project's own files,
# so a bare machine with Python 3.11 and pip needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# One BLAS thread unless the caller says otherwise: refvae's matrices are small, and on a shared
# machine a second OpenBLAS thread makes a step several times slower (benchmarks/README.md).
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: test verify test-all install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# make verify PLOT=1 also installs the plot extra (matplotlib) into $(VENV), so the report has figures
PLOT       ?=
PLOT_STAMP := $(VENV)/.plot-stamp
.PHONY: install-plot

verify: $(STAMP) $(if $(filter 1 yes true,$(PLOT)),$(PLOT_STAMP))
	$(BIN)/python -m refvae verify $(VERIFY_ARGS)

install-plot: $(PLOT_STAMP)

$(PLOT_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[plot]'
	touch $(PLOT_STAMP)

# make bench: refvae's training step against a lean NumPy step (and PyTorch, JAX when installed:
# pip install -e '.[bench]', or BENCH_PYTHON=<a venv's python> that has them); BENCH_ARGS e.g. --quick
BENCH_PYTHON ?= $(BIN)/python
.PHONY: bench

bench: $(STAMP)
	$(BENCH_PYTHON) benchmarks/step_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
