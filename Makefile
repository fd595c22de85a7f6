# routing-laws: `make book` builds the executed book, `make test` runs every test, `make lab` opens the
# chapters in JupyterLab. Each target creates .venv (Python 3.11+) from constraints.txt when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
STAMP := $(VENV)/.installed

.PHONY: book test test-fast corpus sweep venv lab sync clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test,corpus,lab]"
	@touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(VENV)/bin/routing-laws book --profile $(PROFILE)

test: $(STAMP)
	ROUTING_LAWS_PROFILE=smoke $(VENV)/bin/routing-laws book --profile smoke
	ROUTING_LAWS_BOOK_BUILT=1 $(PY) -m pytest -m "not slow" --durations=25 tests
	cd book/executed && ROUTING_LAWS_PROFILE=smoke ../../$(PY) -m pytest --nbval-lax -p no:cacheprovider \
		--nbval-sanitize-with ../../tests/sanitize.cfg $$(ls *.ipynb | grep -v '\.failed\.ipynb$$')

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" tests --ignore=tests/test_browser.py

# JupyterLab from the project's venv; jupytext opens chapters/*.md as notebooks and saves both files.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=chapters

# After editing a chapter's .md (or its .ipynb), write the other file of the pair.
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync chapters/*.md

corpus: $(STAMP)
	$(VENV)/bin/routing-laws corpus

sweep: $(STAMP)
	$(VENV)/bin/routing-laws sweep --grid $(PROFILE)

clean:
	rm -rf _build book/executed
