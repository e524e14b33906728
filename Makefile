# The two commands that matter: `make run` and `make test`. Each sets up .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: run test lint format setup setup-serve bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel

# serving only: no torch
$(VENV)/.installed-serve: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

# everything: training, tests, benchmarks
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[train,dev]'
	touch $@ $(VENV)/.installed-serve

setup-serve: $(VENV)/.installed-serve
setup: $(VENV)/.installed-all

run: $(VENV)/.installed-serve  ## web app and API on http://127.0.0.1:8000
	$(BIN)/maskops serve

test: $(VENV)/.installed-all  ## lint + the docs site (mkdocs.yml, --strict: a broken link fails) + the whole suite
	$(BIN)/ruff check src tests bench
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/pytest -q --timeout=600

lint: $(VENV)/.installed-all
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

format: $(VENV)/.installed-all
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(VENV)/.installed-all
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# --- deployment (deploy/): the serving image and the offline checks of the deploy files
.PHONY: image base-image deploy-check
IMAGE ?= maskops:serve
BASE_IMAGE ?= python:3.11-slim
# podman when present (with runc and the rlimits this kind of machine allows), else docker
CONTAINER ?= $(if $(shell command -v podman 2>/dev/null),podman --runtime runc,docker)
CONTAINER_BUILD_OPTS ?= $(if $(findstring podman,$(CONTAINER)),--format docker --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network host $(if $(wildcard /etc/ssl/certs/ca-certificates.crt),--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro),)

image:  ## the serving image (deploy/Dockerfile, target serve): make image BASE_IMAGE=... IMAGE=...
	$(CONTAINER) build $(CONTAINER_BUILD_OPTS) -f deploy/Dockerfile --target serve \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# A base image from Debian packages where no registry is reachable (mmdebstrap, podman): minbase
# with python3, venv and CA certificates; merged /usr by mmdebstrap's hook (the usrmerge package
# pulls in perl); no documentation, manual pages or translations. About 130 MB.
BASE_TAG ?= localhost/debian-py:bookworm
base-image:  ## make a Debian base image with mmdebstrap and import it: make base-image BASE_TAG=...
	mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Languages "none"' \
		bookworm base.tar
	podman import base.tar $(BASE_TAG)
	rm -f base.tar

deploy-check: $(VENV)/.installed-all  ## hadolint, kubernetes-validate, compose + workflow schemas (offline)
	$(BIN)/python deploy/check.py
