# Carme: the two commands a fresh machine needs are `make demo` and `make test` (see README).
SHELL := /bin/bash
VENV := /opt/carme/venv
PYTHON := $(VENV)/bin/python3
PYTEST_ARGS ?=

.PHONY: demo test install install-browser cluster cluster-down ldap ldap-down postgres postgres-down unit integration

## install everything and start the demo hub on http://127.0.0.1:8000 (foreground; Ctrl-C stops it);
## `make demo TLS=1` (or CARME_TLS=1): on https://127.0.0.1:8000 with the dev CA of dev/tls.sh
TLS ?= $(CARME_TLS)
demo: install cluster ldap
	CARME_TLS=$(or $(TLS),0) bash dev/demo.sh

## install what the tests need (chromium too), start the local cluster, LDAP and PostgreSQL, run the whole suite
test: install-browser cluster ldap postgres
	$(PYTHON) -m pytest -p no:cacheprovider --durations=40 tests $(PYTEST_ARGS)

install:
	bash dev/install.sh

## install plus Debian's chromium and pip's playwright (browser tests)
install-browser:
	bash dev/install.sh --chromium

cluster:
	bash dev/cluster.sh up

cluster-down:
	bash dev/cluster.sh down

## the development LDAP directory (slapd on 127.0.0.1:3389 StartTLS / 6636 LDAPS)
ldap:
	bash dev/ldap.sh up

ldap-down:
	bash dev/ldap.sh down

## the development PostgreSQL (its own cluster on 127.0.0.1:5433, database carme_test) for the stores' tests
postgres:
	bash dev/postgres.sh up

postgres-down:
	bash dev/postgres.sh down

unit:
	$(PYTHON) -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

integration:
	$(PYTHON) -m pytest -p no:cacheprovider tests/integration $(PYTEST_ARGS)
