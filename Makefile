# The README's two commands. Both install what they need into .venv (or the active virtualenv) first.
SHELL := /bin/bash
TORCH_VERSION ?= 2.13.0
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.dyncompress-installed

.PHONY: install test demo clean-venv

$(STAMP): setup.py settings.ini
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# torch first, by exact version, unless one is installed (a bare requirement pulls a multi-GB CUDA build)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/dc_check

# The whole experiment on CPU (tiny preset, synthetic benchmark); re-running resumes. EXPERIMENT=name for another folder.
EXPERIMENT ?= demo
demo: install
	@mkdir -p runs/$(EXPERIMENT)
	$(BIN)/papermill nbs/sweep.ipynb runs/$(EXPERIMENT)/sweep.ipynb -p experiment $(EXPERIMENT) --log-output --no-progress-bar \
		2>&1 | grep --line-buffered -E '^(step|run|skip|done|data|headline) |Error|error|Traceback|report.md' ; test $${PIPESTATUS[0]} -eq 0
	@echo "report: runs/$(EXPERIMENT)/report.md"

clean-venv:
	rm -rf .venv
