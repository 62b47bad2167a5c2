# Entry points. `make demo` and `make test` work on a fresh machine: they create .venv, install the
# Python packages and, where missing, the PostgreSQL and MariaDB server packages. The virtualenv
# has two stamps: `demo` installs only what the demo runs (the `local` extra: drivers, moto,
# trustme), `test` and the other targets the whole toolchain (the `test` extra, which holds the
# `local` extra too, so `make test` also satisfies `make demo`).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
LOCAL_STAMP := $(VENV)/.installed-local
STAMP := $(VENV)/.installed-test
# The SAM CLI's own virtualenv (tests/packaging/test_sam_deploy.py; see its target below)
SAM_VENV ?= .venv-sam
SAM_CLI_VERSION := 1.170.0
SAM_STAMP := $(SAM_VENV)/.installed-aws-sam-cli-$(SAM_CLI_VERSION)
# The CDK example's toolchain (tests/packaging/test_cdk_example.py; see its target below)
CDK_VENV ?= .venv-cdk
CDK_CLI_DIR ?= .cdk-cli
CDK_CLI_VERSION := 2.1148.1
CDK_STAMP := $(CDK_VENV)/.installed-cli-$(CDK_CLI_VERSION)

.PHONY: setup setup-demo demo test lint typecheck bench clean security-scan

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(LOCAL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $(LOCAL_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(LOCAL_STAMP)

# The four toolchains install into virtualenvs of their own (and .cdk-cli/), independent of each
# other: one sub-make installs them side by side (on a fresh machine ~1 minute instead of ~3).
setup:
	$(MAKE) --no-print-directory -j4 $(STAMP) $(SAM_STAMP) $(CDK_STAMP) $(CHECKOV_VENV)/bin/checkov
	bash scripts/install-db-servers.sh

setup-demo: $(LOCAL_STAMP)
	bash scripts/install-db-servers.sh

demo: setup-demo
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

# The SAM CLI for tests/packaging/test_sam_deploy.py (sam build, validate, package, publish's
# checks). A virtualenv of its own, like checkov's: it pins its own boto3 and friends. `make test`
# installs it; `make demo` does not. The stamp names the version, so a new pin reinstalls.
$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $(SAM_STAMP)

# The CDK example (examples/cdk) for tests/packaging/test_cdk_example.py: aws-cdk-lib and
# constructs (examples/cdk/requirements.txt) in a virtualenv of their own, and the CDK CLI from the
# npm registry, pinned, in $(CDK_CLI_DIR)/ (needs Node.js and npm). `make test` installs both;
# `make demo` does not. The stamp names the CLI version, so a new pin reinstalls.
$(CDK_STAMP): examples/cdk/requirements.txt
	$(PYTHON) -m venv $(CDK_VENV)
	$(CDK_VENV)/bin/python -m pip install --quiet -r examples/cdk/requirements.txt
	npm install --prefix $(CDK_CLI_DIR) --no-audit --no-fund --loglevel=error aws-cdk@$(CDK_CLI_VERSION)
	touch $(CDK_STAMP)

# Cost of a rotation on the local stack (moto + throwaway TLS servers): prints the tables and writes
# benchmarks/results-<date>.md and .json. `make bench BENCH_ARGS=--quick` for a short run.
bench: setup
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS) --output benchmarks/results-$$(date +%F).md

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(SAM_VENV) $(CDK_VENV) $(CDK_CLI_DIR) build dist .pytest_cache .mypy_cache .ruff_cache

# ---------------------------------------------------------------------------------------------------
# Lambda packaging (template.yaml). `sam build` runs the build-<LogicalId> targets below with
# ARTIFACTS_DIR set (BuildMethod: makefile), through layers/targets/<Architecture>-<Runtime>/
# Makefile (the resources' ContextPath, resolved by SAM from the template's parameters), which sets
# ARCH and PY to match; `make package` runs the same targets without SAM or Docker and zips the
# results reproducibly into dist/, for the ARCH (x86_64 | arm64) and PY (3.12 | 3.13) given.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
BUILD_PYTHON ?= $(if $(wildcard $(ROOT)/$(BIN)/python),$(ROOT)/$(BIN)/python,python3)
# Platform flags and ARCH/PY checks shared with layers/*/Makefile. `-include`: the other targets
# keep working in a checkout without layers/; the packaging targets say what is missing.
LAYER_MK := $(ROOT)/layers/layer.mk
-include $(LAYER_MK)
REQUIRE_LAYER_MK = @test -f "$(LAYER_MK)" || { echo >&2 "$(LAYER_MK) is missing"; exit 1; }

DIST ?= dist
SAM ?= $(if $(wildcard $(ROOT)/$(SAM_VENV)/bin/sam),$(ROOT)/$(SAM_VENV)/bin/sam,sam)
# 1: the function package carries the boto3/botocore locked in layers/function/requirements.txt,
# so it runs with the SDK it was tested with (PutSecretValue's RotationToken is recent, early
# 2025; the runtime's bundled SDK is updated on AWS's schedule, not ours). 0: rely on the
# runtime's boto3 (~17 MB smaller zip); the lock's other packages (Powertools and what it needs)
# are still installed.
BUNDLE_BOTO3 ?= 1
# The function's third-party packages: pyproject.toml's [project] dependencies and everything
# they need, hash-locked for the Lambda target. `make lock-function` regenerates the lock after a
# change to those dependencies; the build refuses a lock whose top-level pins differ from them.
FUNCTION_LOCK := $(ROOT)/layers/function/requirements.txt
FUNCTION_LOCK_PY := $(ROOT)/layers/function/lock.py

.PHONY: build-RotationFunction build-RolloutFunction build-PostgresLayer build-MysqlLayer build-RedisLayer build-RdsCaLayer package \
	package-rds-ca lint-template sam-build lock-function

# The runtime only: rotation/ without rotation/tools (the laptop tooling: CLI, doctor, demo,
# local service, sandbox; the runtime never imports it), without rotation/client.py (for the
# applications that read the secret) and without caches. rotation/ keeps its
# package path inside the zip (handler rotation.handler.lambda_handler). At the root,
# lambda_function.py: AWS's sample handler name lambda_function.lambda_handler, re-exported, for
# stacks that keep it (docs/migration.md). Then the locked dependencies, exactly:
# --require-hashes --no-deps.
build-RotationFunction:
	$(REQUIRE_LAYER_MK)
	mkdir -p "$(LAMBDA_ARTIFACTS_DIR)"
	rm -rf "$(LAMBDA_ARTIFACTS_DIR)/rotation"
	tar -C "$(ROOT)" -cf - --exclude=rotation/tools --exclude=rotation/client.py --exclude=__pycache__ --exclude='*.py[co]' rotation \
		| tar -C "$(LAMBDA_ARTIFACTS_DIR)" -xf -
	cp "$(ROOT)/layers/function/lambda_function.py" "$(LAMBDA_ARTIFACTS_DIR)/lambda_function.py"
	req="$$(mktemp)" && $(BUILD_PYTHON) "$(FUNCTION_LOCK_PY)" select --pyproject "$(ROOT)/pyproject.toml" \
		--bundle-boto3 "$(BUNDLE_BOTO3)" "$(FUNCTION_LOCK)" > "$$req" \
		&& $(LAMBDA_PIP_INSTALL) --require-hashes --no-deps --target "$(LAMBDA_ARTIFACTS_DIR)" -r "$$req"; \
		rc=$$?; rm -f "$$req"; exit $$rc
	rm -rf "$(LAMBDA_ARTIFACTS_DIR)/bin"

# template.yaml's RolloutFunction (RolloutEcsServices) runs rotation.rollout from the very same
# package: one build recipe, so the two functions cannot drift apart.
build-RolloutFunction:
	$(REQUIRE_LAYER_MK)
	$(MAKE) --no-print-directory -f "$(ROOT)/Makefile" build-RotationFunction ARTIFACTS_DIR="$(LAMBDA_ARTIFACTS_DIR)"

# Re-resolve and re-hash layers/function/requirements.txt (needs the package index; the file's
# header says how). Uses the test virtualenv's pip and `packaging`.
lock-function: $(STAMP)
	$(BIN)/python "$(FUNCTION_LOCK_PY)" generate --pyproject "$(ROOT)/pyproject.toml" --output "$(FUNCTION_LOCK)"

build-PostgresLayer:
	$(REQUIRE_LAYER_MK)
	$(MAKE) -f "$(ROOT)/layers/postgres/Makefile" build-PostgresLayer ARTIFACTS_DIR="$(LAMBDA_ARTIFACTS_DIR)" BUILD_PYTHON="$(BUILD_PYTHON)"

build-MysqlLayer:
	$(REQUIRE_LAYER_MK)
	$(MAKE) -f "$(ROOT)/layers/mysql/Makefile" build-MysqlLayer ARTIFACTS_DIR="$(LAMBDA_ARTIFACTS_DIR)" BUILD_PYTHON="$(BUILD_PYTHON)"

build-RedisLayer:
	$(REQUIRE_LAYER_MK)
	$(MAKE) -f "$(ROOT)/layers/redis/Makefile" build-RedisLayer ARTIFACTS_DIR="$(LAMBDA_ARTIFACTS_DIR)" BUILD_PYTHON="$(BUILD_PYTHON)"

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
# dist/layer-redis-<arch>-<py>.zip, dist/layer-rds-ca.zip. The CA layer goes first: without network it fails before the pip downloads.
package:
	$(REQUIRE_LAYER_MK)
	rm -rf "$(DIST)/build"
	$(MAKE) --no-print-directory package-rds-ca
	$(MAKE) --no-print-directory build-RotationFunction ARTIFACTS_DIR="$(DIST)/build/function"
	$(MAKE) --no-print-directory build-PostgresLayer ARTIFACTS_DIR="$(DIST)/build/layer-postgres"
	$(MAKE) --no-print-directory build-MysqlLayer ARTIFACTS_DIR="$(DIST)/build/layer-mysql"
	$(MAKE) --no-print-directory build-RedisLayer ARTIFACTS_DIR="$(DIST)/build/layer-redis"
	$(BUILD_PYTHON) "$(ROOT)/scripts/build_zip.py" "$(DIST)/build/function" "$(DIST)/function.zip"
	$(BUILD_PYTHON) "$(ROOT)/scripts/build_zip.py" "$(DIST)/build/layer-postgres" "$(DIST)/layer-postgres-$(ARCH)-$(LAMBDA_PY).zip"
	$(BUILD_PYTHON) "$(ROOT)/scripts/build_zip.py" "$(DIST)/build/layer-mysql" "$(DIST)/layer-mysql-$(ARCH)-$(LAMBDA_PY).zip"
	$(BUILD_PYTHON) "$(ROOT)/scripts/build_zip.py" "$(DIST)/build/layer-redis" "$(DIST)/layer-redis-$(ARCH)-$(LAMBDA_PY).zip"

# cfn-lint on the template as is (it explores every condition branch), then on a copy per
# Engine x RotationStrategy x VPC combination and the other checks in tests/unit/test_template.py.
# (cfn-lint 1.58 drops --parameters for templates with a Transform, hence the copies.)
lint-template: $(STAMP)
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_template.py

# `sam build` for ARCH and PY: the template's parameters, which pick the layers' Makefile too.
sam-build:
	$(REQUIRE_LAYER_MK)
	$(SAM) build --build-in-source --parameter-overrides Architecture=$(ARCH) Runtime=python$(LAMBDA_PY)
