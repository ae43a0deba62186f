# fisproxy: `make run` starts the proxy, `make test` runs the whole suite on every supported Python.
#
#   make run [ARGS=...]           the proxy with the machine's python3; its CA (certs/) and state
#   make web [ARGS=...]           (state/fisproxy.sqlite) live in this clone, both git-ignored
#   make test [ARGS=...]          lint + pytest on Python 3.11, 3.12 and 3.13, one after the other;
#                                 a version that is not installed is skipped with a line saying
#                                 so; each version's result and wall time are printed at the end
#   make test PYTHON=python3.12   only that interpreter (every target honours PYTHON)
#   make test SLOW=1              also the tests marked slow (memory peaks, 200 MiB bodies); CI does
#   make test WORKERS=0           pytest in one process (default: WORKERS parallel processes, xdist)
#   make lint                     ruff, import contracts (import-linter), mypy: scripts/lint
#   make containers               the image built and checked, then run as a sidecar in a pod,
#                                 from deploy/kubernetes/pod.yaml and docker-compose.yml, with
#                                 Docker or Podman (docker/check; skipped without either)
#   make bench | clean
#
# One venv per Python minor version, created when missing and re-created when its Python no
# longer matches: `.venv` for the version of `python3` (what `make run` uses), `.venv-X.Y` for
# any other. Stamp files in each venv re-install the package when pyproject.toml changes.
# Interpreters are found as given (python3.X on PATH) or, failing that, under pyenv: its shims
# answer "command not found" for versions that are installed but not selected.

PYTHON    ?= python3
SUPPORTED := 3.11 3.12 3.13
ARGS      ?=
SLOW      ?=
# Four pytest-xdist workers on two cores: much of the suite waits on other processes (the proxy,
# moto, the AWS CLI) or on experiments' real time. Each worker starts its own servers; tests of one
# file share a worker, and files go out in collection order, the longest first (tests/conftest.py:
# LONGEST_FIRST). On a quiet 2-core machine pytest took 307 s with 3 workers, 258 s with 4
# (1.4 and 1.8 cores busy).
WORKERS   ?= 4

PYTEST_ARGS  = -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(if $(SLOW),--slow) $(ARGS)

VERSION_PY  := import sys; print(*sys.version_info[:2], sep=".")
# $(call find_python,NAME): NAME if it runs, else pyenv's newest install of that version; or nothing.
find_python = $(shell p='$(1)'; if "$$p" -c '' 2>/dev/null; then echo "$$p"; else \
	r=$$(pyenv root 2>/dev/null) && ls -d "$$r"/versions/$(patsubst python%,%,$(notdir $(1))).*/bin/$(notdir $(1)) \
	2>/dev/null | sort -V | tail -n 1; fi)
version_of  = $(if $(1),$(shell '$(1)' -c '$(VERSION_PY)' 2>/dev/null))

PY              := $(call find_python,$(PYTHON))
PY_VERSION      := $(call version_of,$(PY))
DEFAULT_VERSION := $(if $(filter python3,$(PYTHON)),$(PY_VERSION),$(call version_of,$(call find_python,python3)))
VENV            := $(if $(filter $(DEFAULT_VERSION),$(PY_VERSION)),.venv,.venv-$(PY_VERSION))
BIN             := $(VENV)/bin
CLEAN_ENV       := env -u AWS_CA_BUNDLE -u REQUESTS_CA_BUNDLE -u SSL_CERT_FILE -u CURL_CA_BUNDLE -u NODE_EXTRA_CA_CERTS

.PHONY: run web test test-one lint containers bench clean

$(VENV)/.python-$(PY_VERSION):
	@[ -n "$(PY_VERSION)" ] || { echo "make: no working '$(PYTHON)' here; name another with PYTHON=..." >&2; exit 2; }
	@if [ "$$($(BIN)/python -c '$(VERSION_PY)' 2>/dev/null)" != "$(PY_VERSION)" ]; then \
		echo "$(PY) -m venv --clear $(VENV)"; \
		$(PY) -m venv --clear $(VENV) && $(BIN)/pip install -q --upgrade pip; \
	fi
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.python-$(PY_VERSION)
	$(BIN)/pip install -q -e .
	@touch $@

# One pip run for the package and its test extras (a fresh venv resolved and built it twice).
$(VENV)/.installed-test: pyproject.toml $(VENV)/.python-$(PY_VERSION)
	$(BIN)/pip install -q -e '.[test]'
	@touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/fisproxy run --certs certs --state state/fisproxy.sqlite $(ARGS)

web: $(VENV)/.installed
	$(BIN)/fisproxy web --certs certs --state state/fisproxy.sqlite $(ARGS)

# ruff, the import contracts (import-linter) and mypy: scripts/lint.
lint: $(VENV)/.installed-test
	VENV=$(VENV) scripts/lint

# One Python: lint and pytest in its venv (what `make test` runs for each version). The lint runs
# beside pytest (mypy alone takes 10 s of one core on a fresh clone) and prints after it; either
# failing fails the target.
test-one: $(VENV)/.installed-test
	@log=$$(mktemp) && { VENV=$(VENV) scripts/lint >"$$log" 2>&1 & lint=$$!; \
	echo "$(CLEAN_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)  (and scripts/lint beside it)"; \
	$(CLEAN_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS); tests=$$?; \
	wait $$lint; linted=$$?; echo "== scripts/lint:"; cat "$$log"; rm -f "$$log"; \
	[ $$linted = 0 ] || echo "== lint FAILED" >&2; [ $$tests = 0 ] && [ $$linted = 0 ]; }

# $(call python_for,X.Y): python3 when it is X.Y (its venv is .venv), else python3.X found as above.
python_for = $(if $(filter $(1),$(DEFAULT_VERSION)),python3,$(call find_python,python$(1)))

# $(call run_tests,VERSION=INTERPRETER ...): test-one for each, in turn; "-" for "not installed".
define run_tests
	summary=; failed=; ran=0; \
	for run in $(1); do \
		v=$${run%%=*}; py=$${run#*=}; \
		if [ "$$py" = - ]; then \
			line="Python $$v: not installed (no python$$v on PATH or under pyenv), skipped"; \
		else \
			echo "== Python $$v: $$py"; start=$$(date +%s); ran=$$((ran + 1)); \
			if $(MAKE) --no-print-directory test-one PYTHON="$$py"; then r=passed; else r=FAILED; failed="$$failed $$v"; fi; \
			line="Python $$v ($$py): $$r in $$(( $$(date +%s) - start )) s"; \
		fi; \
		echo "== $$line"; summary="$$summary\n   $$line"; \
	done; \
	printf '== make test:%b\n' "$$summary"; \
	[ $$ran -gt 0 ] || { echo "== no supported Python ($(SUPPORTED)) found" >&2; exit 1; }; \
	[ -z "$$failed" ] || { echo "== failed on Python$$failed" >&2; exit 1; }
endef

ifeq ($(origin PYTHON),file)
test:
	@+$(call run_tests,$(foreach v,$(SUPPORTED),$(v)=$(or $(call python_for,$(v)),-)))
else
test:
	@echo "== PYTHON=$(PYTHON) given: testing that one only (without it: $(SUPPORTED))"
	@+$(call run_tests,$(or $(PY_VERSION),?)=$(PYTHON))
endif

# Not Python-version-specific: once, with the venv of python3 (CI runs it after `make test`).
containers: $(VENV)/.installed-test
	$(CLEAN_ENV) VENV=$(VENV) docker/check $(ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python bench/overhead.py $(ARGS)

clean:
	rm -rf .venv .venv-* .pytest_cache .mypy_cache .import_linter_cache .grimp_cache build *.egg-info
