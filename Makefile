# tootlake — the two commands a new user needs are `make demo` and `make test`.
PY := .venv/bin/python
TOOTLAKE := .venv/bin/tootlake
PYTEST_ARGS ?=

.PHONY: setup setup-objectstore demo test test-unit test-integration test-objectstore test-oracle lint services-up services-down test-services-down bench bench-bronze bench-models bench-gold bench-silver bench-sync bench-dq bench-fuzz bench-freshness bench-objectstore bench-scale notebooks clean run run-once status drill

setup:            ## venv + package + jars + PostgreSQL 15 (seconds when everything is there)
	bash scripts/setup.sh

demo: setup       ## start Kafka + PostgreSQL, replay real posts through every layer, print what happened
	$(TOOTLAKE) demo

setup-objectstore:  ## setup + the s3a and s3proxy jars (~0.8 GB) for a lake on object storage
	TOOTLAKE_OBJECTSTORE=1 bash scripts/setup.sh

test: setup-objectstore  ## the whole suite (with the object-store + cluster run); starts the services it needs itself
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup-objectstore
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

test-objectstore: setup-objectstore  ## run --once on an s3a:// lake (embedded s3proxy) vs a local lake; sql + status on S3
	$(PY) -m pytest -m integration tests/integration/test_objectstore.py $(PYTEST_ARGS)

# Oracle (ORACLE_DSN, ORACLE_USER, ORACLE_PASSWORD [, ORACLE_WALLET_DIR] in .env): the randomised sync
# sequences and the fixed scenario on your database; fails when Oracle is not configured.
test-oracle: setup  ## the Oracle sync on a real Oracle database (Autonomous DB with a wallet, Oracle Free)
	TOOTLAKE_REQUIRE_ORACLE=1 $(PY) -m pytest tests/unit/test_sync_oracle.py tests/integration/test_sync_oracle_live.py $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check .

services-up: setup
	$(TOOTLAKE) services up

services-down:
	$(TOOTLAKE) services down

# The tests' own broker and cluster (ports and state from tests/conftest.py), left running between runs.
TEST_SERVICES_ENV := STATE_DIR=var/test/state LOG_DIR=var/test/log KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29093 POSTGRES_PORT=29432
test-services-down:
	$(TEST_SERVICES_ENV) $(TOOTLAKE) services down

bench: bench-bronze bench-models bench-silver bench-gold bench-sync

bench-bronze: setup
	$(TOOTLAKE) bench bronze

bench-models: setup
	$(TOOTLAKE) bench models

bench-silver: setup   ## silver scoring posts/s vs plain onnxruntime (ratio, goal >= 0.8), rate without scoring
	$(TOOTLAKE) bench silver

bench-gold: setup     ## gold run time on 1x, 10x, 100x the bundled posts
	$(TOOTLAKE) bench gold

bench-sync: setup     ## PostgreSQL upsert rows/s vs plain COPY of the same rows (ratio, goal >= 0.5)
	$(TOOTLAKE) bench sync

bench-dq: setup       ## silver and gold with data-quality rules on vs off (overhead, goal <= 10%), one GX validation
	$(TOOTLAKE) bench dq

bench-fuzz: setup     ## hostile-input campaign: 10,000 valid and malformed records through run --once (lost 0?)
	$(TOOTLAKE) bench fuzz --records 10000

FRESHNESS_MINUTES ?= 10
bench-freshness: setup  ## `tootlake run` end to end at 5 then 50 posts/s: latency to PROCESSEDPOSTS, backlog, RSS, CPU
	$(TOOTLAKE) bench freshness --rate 5 --minutes $(FRESHNESS_MINUTES)
	$(TOOTLAKE) bench freshness --rate 50 --minutes $(FRESHNESS_MINUTES)

bench-scale: setup  ## one 1,000-record batch on silver of 10k, 100k and 1M posts: silver, gold, sync times and ratios
	$(TOOTLAKE) bench scale

bench-objectstore: setup-objectstore  ## bronze and silver rows/s on an s3a:// lake (embedded s3proxy) vs a local lake
	$(TOOTLAKE) bench objectstore

notebooks: setup  ## run notebooks/*.ipynb on the lake: plots in var/plots/, executed copies in var/notebooks/
	$(PY) -c "from tootlake.pipelines.analysis import run_notebooks; raise SystemExit(run_notebooks())"

run: setup        ## the whole pipeline continuously, supervised (Ctrl-C stops it); `make status` meanwhile
	$(TOOTLAKE) run

run-once: setup   ## process what is there once, stage after stage (what cron / a systemd timer runs)
	$(TOOTLAKE) run --once

status:           ## is it healthy? services, stages, Kafka lag, tables, quarantine, DQ (no JVM)
	$(TOOTLAKE) status

drill: setup      ## reliability drill on the test services: SIGKILL each stage, Kafka + PostgreSQL outages
	$(TEST_SERVICES_ENV) $(TOOTLAKE) drill

clean:            ## stop services and remove lake data, checkpoints and service state (keeps .venv and jars)
	-$(TOOTLAKE) services down
	-$(TEST_SERVICES_ENV) $(TOOTLAKE) services down
	rm -rf var
