# Falcon: `make run` for a first look on embedded defaults, `make test` for the full check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
export UV_PYTHON_DOWNLOADS := never
UV := .tools/bin/uv
VENV_PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

# The environment `make test` runs in: PostgreSQL and Redis on loopback, throwaway secrets.
TEST_ENV := \
	DATABASE_URL=postgres://falcon@127.0.0.1:5432/falcon \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/15 \
	CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/14 \
	FALCON_SECRET_KEY=test-secret-key-not-for-production-0123456789abcdefghijklmnop \
	FALCON_ENCRYPTION_KEYS=test1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= \
	FALCON_DEBUG=0 FALCON_SSL_REDIRECT=0 FALCON_VAR_DIR=$(CURDIR)/var/test \
	ALLOWED_HOSTS=testserver,localhost,127.0.0.1 EMAIL_URL=locmem://

.PHONY: help venv run test lint typecheck pytest pytest-amqp services chromium lock clean bench bench-n8n

help:
	@echo "make run    first look: install, migrate, seed the demo tenant, start web + worker + beat"
	@echo "make test   install, start PostgreSQL/Redis if needed, run ruff, mypy and pytest"

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: Python >= 3.11 is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check --require-hashes -r .ci/uv-requirements.txt

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

venv: .venv/.synced

# localstripe (GPL) stands in for Stripe in tests: its own virtualenv, a separate process, never imported.
LOCALSTRIPE := .tools/localstripe/bin/localstripe
$(LOCALSTRIPE): .ci/localstripe-requirements.txt | $(UV)
	$(PYTHON) -m venv .tools/localstripe
	.tools/localstripe/bin/pip install --quiet --disable-pip-version-check --require-hashes -r .ci/localstripe-requirements.txt
	@touch $@

run: venv
	$(VENV_PY) manage.py migrate --noinput
	$(VENV_PY) manage.py collectstatic --noinput -v0
	FALCON_BASE_URL=http://$(HOST):$(PORT) $(VENV_PY) manage.py seed_demo
	$(VENV_PY) -m falcon.devstack --host $(HOST) --port $(PORT)

services:
	./.ci/services

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

typecheck: venv
	$(TEST_ENV) .venv/bin/mypy .

# The browser tests drive Debian's chromium (Playwright with executable_path; no browser download).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# The Celery-backed tests run on Redis; runs, schedules and crash recovery run again on RabbitMQ (own test
# database, so the two sessions never share one).
AMQP_SUBSET := tests/agents/test_runs.py tests/agents/test_schedule_beat.py tests/agents/test_crash.py \
	tests/operations/test_graceful_stop.py tests/operations/test_beat.py
AMQP_BROKER := amqp://guest:guest@127.0.0.1:5672//
AMQP_ENV := $(filter-out DATABASE_URL=% CELERY_BROKER_URL=%,$(TEST_ENV)) \
	DATABASE_URL=postgres://falcon@127.0.0.1:5432/falcon_amqp CELERY_BROKER_URL=$(AMQP_BROKER)

pytest: venv services chromium $(LOCALSTRIPE)
	$(TEST_ENV) .venv/bin/pytest $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,$(AMQP_ENV) .venv/bin/pytest -p no:cacheprovider $(AMQP_SUBSET))

pytest-amqp: venv services
	$(AMQP_ENV) .venv/bin/pytest -p no:cacheprovider $(AMQP_SUBSET)

test: lint typecheck pytest

# Benchmarks print figures (they are not tests): a throwaway database falcon_bench, a real worker.
BENCH_ENV := $(filter-out DATABASE_URL=%,$(TEST_ENV)) DATABASE_URL=postgres://falcon@127.0.0.1:5432/falcon_bench

bench: venv services
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.engine_overhead
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.queue_drain
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.io_concurrency
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.llm_step_cpu
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.webhooks
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.quota
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.run_start
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.dashboard_pages
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.observability_overhead
	$(BENCH_ENV) $(VENV_PY) -m benchmarks.generator_eval
	env -u DATABASE_URL $(VENV_PY) -m benchmarks.first_look

# Side by side with n8n (issue #15): installs n8n 2.8.4 into $(N8N_BENCH) once (~4 minutes, from the
# npm registry; the anchor script in ../shared/anchors/n8n), then ~15 minutes of interleaved levels. Falcon
# runs on RabbitMQ, the broker the README's production section recommends for runs.
N8N_BENCH ?= /tmp/n8nbench
N8N_ANCHOR ?= ../shared/anchors/n8n
bench-n8n: venv services
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	@test -x $(N8N_BENCH)/node_modules/.bin/n8n || { mkdir -p $(N8N_BENCH) && cp -r $(N8N_ANCHOR)/. $(N8N_BENCH)/ && \
		BENCH=$(N8N_BENCH) WORKFLOWS="" $(N8N_BENCH)/run.sh; }
	$(filter-out CELERY_BROKER_URL=%,$(BENCH_ENV)) CELERY_BROKER_URL=$(AMQP_BROKER) \
		N8N_BENCH=$(N8N_BENCH) $(VENV_PY) -m benchmarks.vs_n8n

lock: $(UV)
	$(UV) lock --python $(PYTHON)

clean:
	rm -rf .venv .tools var/test .mypy_cache .ruff_cache .pytest_cache
