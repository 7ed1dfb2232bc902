# mire2e-viz: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
# Both create the virtual environment in .venv/ (torch 2.13.0 CPU build) on a fresh machine.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test test-fast venv browser lint figures bench model-card clean

demo: $(STAMP)
	$(VENV)/bin/mire2e-viz demo

test: $(STAMP) browser
	$(PY) -m pytest -q

# everything except the notebook and browser tests
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not browser" --ignore=tests/test_notebooks.py

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# the local CPU build of torch (an unpinned torch would pull a multi-GB CUDA build)
	$(PIP) install -q torch==2.13.0
	# forgi's PyPI wheel is built against NumPy 1: build it from source
	$(PIP) install -q --no-binary forgi forgi==2.2.3
	$(PIP) install -q -e '.[notebook,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Debian's Chromium for the Playwright tests (never `playwright install`)
browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) && $(CHROMIUM) --version

lint: $(STAMP)
	$(PY) -m ruff check mire2e_viz tests bench scripts

figures: $(STAMP)
	$(PY) scripts/make_figures.py

bench: $(STAMP)
	$(PY) bench/scan_throughput.py
	$(PY) bench/roofline.py
	$(PY) bench/widget_latency.py
	$(PY) bench/train_throughput.py --stages structure mfe classifier

model-card: $(STAMP)
	$(PY) scripts/make_model_card.py

clean:
	rm -rf $(VENV) demo-output test-artifacts .pytest_cache
