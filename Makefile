# ctxpaper — the two commands of the README, and a few helpers.
#   make book   install (once), execute every chapter on the quick profile, build the HTML
#               (DATA=released: chapters 04-07 on the released tracks, Deezer previews)
#   make test   install (once), run the whole test suite
#   make reproduce  the paper's experiment on the released tracks (python -m ctxpaper.reproduce)
# The install is skipped when .venv already matches requirements.lock and pyproject.toml.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
SEED ?= 0
DATA ?= simulated
CHAPTERS ?=
REPRODUCE_ARGS ?=
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

.PHONY: book test install execute html reproduce benchmarks clean clean-cache

book: $(STAMP)
	$(PY) -m ctxpaper.book --profile $(PROFILE) --seed $(SEED) --data-source $(DATA) $(CHAPTERS)

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

# make install-cuda [TORCH_CUDA=cu126|cu129|cu130|cu132]: the environment above, then the CUDA
# build of the same pinned torch from PyTorch's index (README, "Training on a GPU"). The default
# build is the one in requirements-cuda.txt; pick an older one if the NVIDIA driver needs it.
TORCH_CUDA ?= $(shell sed -n 's/^torch==[^+]*+//p' requirements-cuda.txt)
TORCH_VERSION = $(shell sed -n 's/^torch==//p' requirements.lock)
# PyTorch's CUDA builds of torch 2.13.0 (download.pytorch.org/whl/<build>).
TORCH_CUDA_BUILDS := cu126 cu129 cu130 cu132
ifneq ($(filter install-cuda,$(MAKECMDGOALS)),)
ifeq ($(filter $(TORCH_CUDA),$(TORCH_CUDA_BUILDS)),)
$(error TORCH_CUDA=$(TORCH_CUDA) is not a CUDA build of torch $(TORCH_VERSION); use one of: $(TORCH_CUDA_BUILDS))
endif
endif
.PHONY: install-cuda

install-cuda: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check \
	  --index-url https://download.pytorch.org/whl/$(TORCH_CUDA) "torch==$(TORCH_VERSION)+$(TORCH_CUDA)"
	$(PY) -m ctxpaper.device

execute: $(STAMP)
	$(PY) -m ctxpaper.book --profile $(PROFILE) --seed $(SEED) --data-source $(DATA) --no-html $(CHAPTERS)

html: $(STAMP)
	$(PY) -m ctxpaper.book --html-only

# make reproduce [REPRODUCE_ARGS="--dry-run"]: fetch, extract, train Table 2 on `full`, build the book
# on the released tracks; it prints its plan (disk, time per stage) first.
reproduce: $(STAMP)
	$(PY) -m ctxpaper.reproduce $(REPRODUCE_ARGS)

benchmarks: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build book/_executed

clean-cache:
	rm -rf .cache
