# The two commands of the README: `make run` (the whole pipeline, end to end) and `make test`.
PYTHON ?= python3
export PYTHONPATH := $(CURDIR)/services:$(CURDIR)

.PHONY: install run test lint typecheck protos protos-check kafka-up kafka-down perf sdk helm

# The SDK's wheel first: the server distribution depends on suptech-sdk (not on PyPI).
install:
	$(PYTHON) -m pip install -q "setuptools>=69" wheel
	$(PYTHON) -m pip install -q --force-reinstall --no-deps "$$(PYTHON=$(PYTHON) scripts/build_sdk.sh)"
	$(PYTHON) -m pip install -q -e ".[dev]"

run: install kafka-up
	$(PYTHON) -m simulators.run_pipeline

# The chart tests need helm: `helm` finds or builds it, and they fail rather than skip without it.
test: install kafka-up protos-check lint typecheck helm sdk
	HELM="$$(scripts/helm.sh path)" SUPTECH_REQUIRE_HELM=1 $(PYTHON) -m pytest

# The institution SDK's own wheel (sdk/python/pyproject.toml): dist/suptech_sdk-<version>-*.whl.
sdk:
	PYTHON=$(PYTHON) scripts/build_sdk.sh

helm:
	scripts/helm.sh ensure >/dev/null

lint:
	$(PYTHON) -m ruff check services tests simulators perf
	$(PYTHON) -m ruff format --check services tests simulators perf

typecheck:
	$(PYTHON) -m mypy

protos:
	scripts/gen_protos.sh

protos-check:
	scripts/gen_protos.sh --check

kafka-up:
	scripts/kafka.sh up

kafka-down:
	scripts/kafka.sh down

# Every benchmark, each printing its figures and writing perf/results/<name>.json.
# QUICK=1 runs the short versions.
BENCHMARKS := ingest_throughput gateway_validation gateway_throughput detection_quality field_quality nab_benchmark odds_smtp detector_speed alert_latency
perf: install kafka-up
	scripts/postgres.sh up
	for b in $(BENCHMARKS); do $(PYTHON) -m perf.$$b $(if $(QUICK),--quick) || exit 1; done
