# fisproxy: `make run` starts the proxy, `make test` runs the whole suite.
# Both create .venv from the machine's python3 when it is missing, and are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run web test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/fisproxy run --certs certs $(ARGS)

web: $(VENV)/.installed
	$(BIN)/fisproxy web --certs certs $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check fisproxy addons tests bench

test: $(VENV)/.installed-test
	$(BIN)/ruff check fisproxy addons tests bench
	env -u AWS_CA_BUNDLE -u REQUESTS_CA_BUNDLE -u SSL_CERT_FILE -u CURL_CA_BUNDLE -u NODE_EXTRA_CA_CERTS \
		$(BIN)/python -m pytest -q $(ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python bench/overhead.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
