# `make run` and `make test` install what is missing, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian 12 / Raspberry Pi OS packages: build tools for pyscard, the real
# software stack the agent and its tests drive, and Xvfb for display tests.
DEB_PACKAGES := python3-venv python3-dev build-essential swig libpcsclite-dev \
	pcscd vsmartcard-vpcd pcsc-tools espeak-ng alsa-utils sox libgl1 \
	mosquitto mosquitto-clients xvfb x11-apps graphviz

.PHONY: run test lint diagram bench deps venv clean install uninstall

run: deps venv
	$(BIN)/atm run --local-broker

# The linters first, then the whole suite.
test: deps venv
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q

# BASE: the commit the side-by-side comparison measures this tree against.
BASE ?= 5992920

# ruff (lint and format check), mypy (strict on fsm/ and devices/), import-linter's contracts.
lint: deps venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# docs/state-diagram.md from the state table in fsm/states.py.
diagram: venv
	$(BIN)/atm diagram --format markdown -o docs/state-diagram.md

bench: deps venv
	$(BIN)/python bench/run.py
	$(BIN)/python bench/compare.py --base $(BASE)

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

# The kiosk: the agent in a venv under PREFIX, the user atm, /etc/atm, /var/lib/atm, the
# systemd unit and the udev rules (deploy/install.sh; DESTDIR stages it).
PREFIX ?= /opt/atm
install: deps venv
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" BUILD_PYTHON="$(BIN)/python" deploy/install.sh install

uninstall:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" deploy/install.sh uninstall

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
