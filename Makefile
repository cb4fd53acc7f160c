# Carme: the two commands a fresh machine needs are `make demo` and `make test` (see README).
SHELL := /bin/bash
VENV := /opt/carme/venv
PYTHON := $(VENV)/bin/python3
PYTEST_ARGS ?=

.PHONY: demo test install cluster cluster-down unit integration lint

## install everything and start the demo hub on http://127.0.0.1:8000 (foreground; Ctrl-C stops it)
demo: install cluster
	bash dev/demo.sh

## install what the tests need, start the local cluster, run the whole suite
test: install cluster
	$(PYTHON) -m pytest -p no:cacheprovider tests $(PYTEST_ARGS)

install:
	bash dev/install.sh

cluster:
	bash dev/cluster.sh up

cluster-down:
	bash dev/cluster.sh down

unit:
	$(PYTHON) -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

integration:
	$(PYTHON) -m pytest -p no:cacheprovider tests/integration $(PYTEST_ARGS)
