# ctxpaper — the two commands of the README, and a few helpers.
#   make book   install (once), execute every chapter on the quick profile, build the HTML
#   make test   install (once), run the whole test suite
# The install is skipped when .venv already matches requirements.lock and pyproject.toml.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
SEED ?= 0
CHAPTERS ?=
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

.PHONY: book test install execute html benchmarks clean clean-cache

book: $(STAMP)
	$(PY) -m ctxpaper.book --profile $(PROFILE) --seed $(SEED) $(CHAPTERS)

test: $(STAMP)
	@# pytest exits 5 when it collected nothing: that must fail, not pass silently.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@echo "Installing the pinned environment into $(VENV) (once; later runs skip this)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "ctxpaper needs Python 3.11, found " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# A kernelspec that points at this venv's interpreter, whatever PATH says.
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ctxpaper)" > /dev/null
	rm -f $(VENV)/.installed-*
	touch $@

execute: $(STAMP)
	$(PY) -m ctxpaper.book --profile $(PROFILE) --seed $(SEED) --no-html $(CHAPTERS)

html: $(STAMP)
	$(PY) -m ctxpaper.book --html-only

benchmarks: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build book/_executed

clean-cache:
	rm -rf .cache
