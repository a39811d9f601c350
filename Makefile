# Two entry points, both self-contained on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test bench explore lab clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

## Build the book offline into _build/html, strictly (any warning fails), then check every figure is there
## and no page fetches a remote URL. Progress bars are off (TQDM_DISABLE): a frozen widget would need a CDN.
book: $(STAMP)
	$(PY) -m sharpness.book prepare
	TQDM_DISABLE=1 $(VENV)/bin/jupyter-book build . --path-output . -W -n --keep-going
	$(PY) -m sharpness.book check _build/html

## Lint (pyflakes' rules: unused or undefined names, asserts that cannot fail), then run the test suite.
test: $(STAMP)
	$(PY) -m ruff check --no-cache src tests bench
	$(PY) -m pytest -q

## Run every benchmark under bench/ that needs no arguments (each measures on the CPU here, and on the GPU where one
## is present); the ones below need trained runs or the CIFAR-10 pack and run by hand (see their --help).
BENCH_BY_HAND := bench/evaluation.py bench/hessian_top.py bench/vit_fit.py
bench: $(STAMP)
	@for script in $(filter-out $(BENCH_BY_HAND),$(wildcard bench/*.py)); do echo "== $$script"; $(PY) $$script || exit 1; done

## Serve the live explorers (toy functions, boundaries, landscapes) as one Voila app on 127.0.0.1:8866 (PORT=... to change).
explore: $(STAMP)
	$(PY) -m sharpness.book.figures.explore $(if $(PORT),--port $(PORT))

## Open the chapters in JupyterLab; a chapter's .md opens as a notebook (jupytext), its live cells run there.
LAB_DEFAULTS := $(VENV)/share/jupyter/lab/settings/overrides.json
lab: $(STAMP)
	$(VENV)/bin/jupytext-config --settings-file $(LAB_DEFAULTS) set-default-viewer markdown myst
	$(VENV)/bin/jupyter lab book $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean:
	rm -rf _build
