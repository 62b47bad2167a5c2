# Shared by layers/*/Makefile and the top-level Makefile (no targets here, only variables).
#
# Installs wheels built for the Lambda target rather than for this machine: the Python minor
# version of the Runtime parameter (PY) and the Architecture parameter (ARCH), on Amazon Linux 2023
# (glibc 2.34), so every manylinux tag up to glibc 2.34 loads there. pip does not widen a
# --platform tag by itself, hence the explicit list: psycopg-binary's aarch64 wheels are only
# manylinux_2_28, its x86_64 wheels manylinux2014 (glibc 2.17).
#
# ARCH and PY must match the template's Architecture and Runtime. Under `sam build` they do by
# construction: SAM runs layers/targets/<Architecture>-<Runtime>/Makefile (the resources'
# ContextPath), which sets both and includes the top-level Makefile. `make package` takes them
# from the command line. A layer built for another Python minor version or architecture does not
# import.

ARCH ?= x86_64
PY ?= 3.12
BUILD_PYTHON ?= python3

LAMBDA_WHEEL_ARCH = $(if $(filter x86_64,$(ARCH)),x86_64,$(if $(filter arm64,$(ARCH)),aarch64,$(error ARCH must be x86_64 or arm64, not "$(ARCH)")))
LAMBDA_PY = $(if $(filter 3.12 3.13,$(PY)),$(PY),$(error PY must be 3.12 or 3.13 (Lambda runtimes on Amazon Linux 2023), not "$(PY)"))
LAMBDA_PLATFORMS = manylinux2014 manylinux_2_28 manylinux_2_34

# Usage: $(LAMBDA_PIP_INSTALL) --target DIR -r requirements.txt
LAMBDA_PIP_INSTALL = PIP_ROOT_USER_ACTION=ignore $(BUILD_PYTHON) -m pip install --quiet --disable-pip-version-check \
	--no-compile --only-binary=:all: --implementation cp --python-version $(LAMBDA_PY) \
	$(foreach tag,$(LAMBDA_PLATFORMS),--platform $(tag)_$(LAMBDA_WHEEL_ARCH))

# ARTIFACTS_DIR is set by `sam build` (BuildMethod: makefile) or by `make package`.
LAMBDA_ARTIFACTS_DIR = $(if $(ARTIFACTS_DIR),$(abspath $(ARTIFACTS_DIR)),$(error ARTIFACTS_DIR is not set: run through `sam build`, `make package`, or pass ARTIFACTS_DIR=...))

# Usage: $(call LAMBDA_LAYER_MARKER,postgres). Writes rotation-layers/<layer>.json beside python/
# (/opt/rotation-layers/ in Lambda, which merges every layer under /opt: one file per layer name),
# naming the target the wheels were built for. rotation/adapters/_layers.py reads it only when a
# driver fails to import, to tell a layer built for another architecture or Python from a missing
# one. Sorted keys and a trailing newline, as json.dumps(sort_keys=True): byte-identical builds.
LAMBDA_LAYER_MARKER = mkdir -p "$(LAMBDA_ARTIFACTS_DIR)/rotation-layers" \
	&& printf '{"architecture": "%s", "layer": "%s", "python": "%s"}\n' \
		"$(if $(LAMBDA_WHEEL_ARCH),$(ARCH))" "$(1)" "$(LAMBDA_PY)" \
		> "$(LAMBDA_ARTIFACTS_DIR)/rotation-layers/$(1).json"
