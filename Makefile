# Two commands a new machine needs: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

## Set up .venv (the project, its pinned dependencies and the dev tools) and nothing else.
setup: $(STAMP)

.PHONY: setup demo test dev services chromium lint format bench constraints clean

# The install step is deploy/install.sh, which the container image runs too (deploy/Dockerfile).
$(STAMP): pyproject.toml deploy/install.sh deploy/constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	sh deploy/install.sh $(BIN)/pip dev
	touch $(STAMP)

## Set up, start the embedded simulator and database, refresh every symbol, print the table.
demo: $(STAMP)
	$(BIN)/assets-pipeline refresh

## Set up and run the whole test suite against the local PostgreSQL and Redis.
test: $(STAMP) services chromium
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider -m "not daemon"
	$(BIN)/python -m pytest -p no:cacheprovider -m daemon

## The Dagster UI and daemon together on the embedded defaults (http://127.0.0.1:3000).
dev: $(STAMP)
	mkdir -p .dagster_home
	cp dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -h 127.0.0.1 -p 3000

## Start PostgreSQL and Redis if they are down (this machine's packaged services).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && exit 0; sleep 1; done; echo "PostgreSQL or Redis did not start" >&2; exit 1

## The browser the UI test drives (Debian's chromium), installed when it is missing.
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y --no-install-recommends chromium \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; }; }

lint: $(STAMP)
	$(BIN)/ruff check assets_pipeline assets_pipeline_tests bench
	$(BIN)/ruff format --check assets_pipeline assets_pipeline_tests bench

format: $(STAMP)
	$(BIN)/ruff format assets_pipeline assets_pipeline_tests bench
	$(BIN)/ruff check --fix assets_pipeline assets_pipeline_tests bench

bench: $(STAMP) services
	$(BIN)/python bench/bench_refresh.py

## Write deploy/constraints.txt again after a dependency changed in pyproject.toml: the newest
## versions pyproject.toml allows, resolved in a scratch environment without the old constraints.
constraints:
	rm -rf $(VENV).constraints && $(PYTHON) -m venv $(VENV).constraints
	$(VENV).constraints/bin/pip install --quiet --upgrade pip
	$(VENV).constraints/bin/pip install --quiet -e '.[dev]'
	{ sed -n '/^#/p' deploy/constraints.txt; \
	  $(VENV).constraints/bin/pip freeze --all --exclude-editable | grep -v -i -E '^(setuptools|wheel)=='; \
	} > deploy/constraints.txt.new
	mv deploy/constraints.txt.new deploy/constraints.txt
	rm -rf $(VENV).constraints

clean:
	rm -rf $(VENV) .dagster_home *.egg-info
