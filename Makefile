# Entry points. `make demo` and `make test` work on a fresh machine: they create .venv, install the
# Python packages and, where missing, the PostgreSQL and MariaDB server packages.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench clean security-scan

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)
	bash scripts/install-db-servers.sh

demo: setup
	$(BIN)/rotation demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint security-scan
	$(BIN)/python -m pytest -n 2 tests

# Security scan of template.yaml. checkov pins boto3 below this project's pin, so it gets a
# virtualenv of its own. Suppressions are justified in place (checkov:skip comments).
CHECKOV_VENV ?= .venv-checkov
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==3.3.30

security-scan: $(CHECKOV_VENV)/bin/checkov
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet \
		--skip-download

# Cost of a rotation on the local stack (moto + throwaway TLS servers): prints the tables and writes
# benchmarks/results-<date>.md and .json. `make bench BENCH_ARGS=--quick` for a short run.
bench: setup
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS) --output benchmarks/results-$$(date +%F).md

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build dist .pytest_cache .mypy_cache .ruff_cache

# ---------------------------------------------------------------------------------------------------
# Lambda packaging (template.yaml). `sam build` runs the build-<LogicalId> targets below with
# ARTIFACTS_DIR set (BuildMethod: makefile); `make package` runs the same targets without SAM or
# Docker and zips the results reproducibly into dist/. ARCH (x86_64 | arm64) and PY (3.12 | 3.13)
# must match the template's Architecture and Runtime parameters; `make sam-build` passes both.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
BUILD_PYTHON ?= $(if $(wildcard $(ROOT)/$(BIN)/python),$(ROOT)/$(BIN)/python,python3)
# Platform flags and ARCH/PY checks shared with layers/*/Makefile. `-include`: the other targets
# keep working in a checkout without layers/; the packaging targets say what is missing.
LAYER_MK := $(ROOT)/layers/layer.mk
-include $(LAYER_MK)
REQUIRE_LAYER_MK = @test -f "$(LAYER_MK)" || { echo >&2 "$(LAYER_MK) is missing"; exit 1; }

DIST ?= dist
SAM ?= sam
# 1: the function package carries the boto3/botocore pinned in pyproject.toml, so it runs with the
# SDK it was tested with (PutSecretValue's RotationToken is recent, early 2025; the runtime's
# bundled SDK is updated on AWS's schedule, not ours). 0: rely on the runtime's boto3 (~17 MB
# smaller zip).
BUNDLE_BOTO3 ?= 1
# The function's third-party packages: [project] dependencies of pyproject.toml, the one list.
FUNCTION_REQUIREMENTS_PY = import sys, tomllib; deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]; print("\n".join(d for d in deps if sys.argv[2] == "1" or not d.lower().startswith("boto3")))

.PHONY: build-RotationFunction build-PostgresLayer build-MysqlLayer build-RdsCaLayer package \
	package-rds-ca lint-template sam-build

# rotation/ keeps its package path inside the zip (handler rotation.handler.lambda_handler).
build-RotationFunction:
	$(REQUIRE_LAYER_MK)
	mkdir -p "$(LAMBDA_ARTIFACTS_DIR)"
	rm -rf "$(LAMBDA_ARTIFACTS_DIR)/rotation"
	tar -C "$(ROOT)" -cf - --exclude=__pycache__ --exclude='*.py[co]' rotation | tar -C "$(LAMBDA_ARTIFACTS_DIR)" -xf -
	req="$$(mktemp)" && $(BUILD_PYTHON) -c '$(FUNCTION_REQUIREMENTS_PY)' "$(ROOT)/pyproject.toml" "$(BUNDLE_BOTO3)" > "$$req" \
		&& $(LAMBDA_PIP_INSTALL) --target "$(LAMBDA_ARTIFACTS_DIR)" -r "$$req"; rc=$$?; rm -f "$$req"; exit $$rc
	rm -rf "$(LAMBDA_ARTIFACTS_DIR)/bin"

build-PostgresLayer:
	$(REQUIRE_LAYER_MK)
	$(MAKE) -f "$(ROOT)/layers/postgres/Makefile" build-PostgresLayer ARTIFACTS_DIR="$(LAMBDA_ARTIFACTS_DIR)" BUILD_PYTHON="$(BUILD_PYTHON)"

build-MysqlLayer:
	$(REQUIRE_LAYER_MK)
	$(MAKE) -f "$(ROOT)/layers/mysql/Makefile" build-MysqlLayer ARTIFACTS_DIR="$(LAMBDA_ARTIFACTS_DIR)" BUILD_PYTHON="$(BUILD_PYTHON)"

# AWS's RDS CA bundle plus Mozilla's public roots (certifi), both hash-pinned, in one PEM
# (layers/rds-ca/Makefile says how, and which variables replace the downloads: RDS_CA_BUNDLE_FILE,
# RDS_CA_BUNDLE_SHA256, RDS_CA_BUNDLE_URL, RDS_CA_CERTIFI_WHEEL, RDS_CA_CERTIFI_REQUIREMENTS).
build-RdsCaLayer:
	$(REQUIRE_LAYER_MK)
	$(MAKE) -f "$(ROOT)/layers/rds-ca/Makefile" build-RdsCaLayer ARTIFACTS_DIR="$(LAMBDA_ARTIFACTS_DIR)" BUILD_PYTHON="$(BUILD_PYTHON)"

# dist/layer-rds-ca.zip (certificates only: one zip for every runtime and architecture)
package-rds-ca:
	$(REQUIRE_LAYER_MK)
	rm -rf "$(DIST)/build/layer-rds-ca"
	$(MAKE) --no-print-directory build-RdsCaLayer ARTIFACTS_DIR="$(DIST)/build/layer-rds-ca"
	$(BUILD_PYTHON) "$(ROOT)/scripts/build_zip.py" "$(DIST)/build/layer-rds-ca" "$(DIST)/layer-rds-ca.zip"

# dist/function.zip, dist/layer-postgres-<arch>-<py>.zip, dist/layer-mysql-<arch>-<py>.zip,
# dist/layer-rds-ca.zip. The CA layer goes first: without network it fails before the pip downloads.
package:
	$(REQUIRE_LAYER_MK)
	rm -rf "$(DIST)/build"
	$(MAKE) --no-print-directory package-rds-ca
	$(MAKE) --no-print-directory build-RotationFunction ARTIFACTS_DIR="$(DIST)/build/function"
	$(MAKE) --no-print-directory build-PostgresLayer ARTIFACTS_DIR="$(DIST)/build/layer-postgres"
	$(MAKE) --no-print-directory build-MysqlLayer ARTIFACTS_DIR="$(DIST)/build/layer-mysql"
	$(BUILD_PYTHON) "$(ROOT)/scripts/build_zip.py" "$(DIST)/build/function" "$(DIST)/function.zip"
	$(BUILD_PYTHON) "$(ROOT)/scripts/build_zip.py" "$(DIST)/build/layer-postgres" "$(DIST)/layer-postgres-$(ARCH)-$(LAMBDA_PY).zip"
	$(BUILD_PYTHON) "$(ROOT)/scripts/build_zip.py" "$(DIST)/build/layer-mysql" "$(DIST)/layer-mysql-$(ARCH)-$(LAMBDA_PY).zip"

# cfn-lint on the template as is (it explores every condition branch), then on a copy per
# Engine x RotationStrategy x VPC combination and the other checks in tests/unit/test_template.py.
# (cfn-lint 1.58 drops --parameters for templates with a Transform, hence the copies.)
lint-template: $(STAMP)
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_template.py

# sam build with the same ARCH/PY for the layers (via make) and for the template's parameters.
sam-build:
	$(REQUIRE_LAYER_MK)
	ARCH=$(ARCH) PY=$(LAMBDA_PY) $(SAM) build --build-in-source \
		--parameter-overrides Architecture=$(ARCH) Runtime=python$(LAMBDA_PY)
