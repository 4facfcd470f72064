# Arena: `make run` starts it, `make test` tests it. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test bench-engine bench-store bench-reco bench-fanout bench-events bench-groups bench-segments bench-challenge bench-race bench-board bench-fairplay bench-mqtt bench-ingress bench-push load-athletes load-join-surge load-spectators load-devices load-race-day setup system postgis clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c 'from engine.race import warm_up; warm_up()'  # compile fair play's rules once
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# Debian packages the browser tests and the ingress benchmark drive (root and apt-get needed;
# elsewhere install them yourself: without chromium the browser tests skip, or fail under CI=true).
APT := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
system:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { $(APT) chromium chromium-driver || { apt-get update -qq && $(APT) chromium chromium-driver; }; }; } \
		|| echo "chromium is not installed: the browser tests will skip"

# PostGIS, the segment benchmark's peer only (no test needs it), installed beside a local PostgreSQL 15
# server; without it bench-segments skips that peer.
postgis:
	@[ -e /usr/share/postgresql/15/extension/postgis.control ] || { [ -d /usr/lib/postgresql/15 ] \
		&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && { $(APT) postgresql-15-postgis-3 || { apt-get update -qq && $(APT) postgresql-15-postgis-3; }; }; } \
		|| echo "PostGIS is not installed: make bench-segments will skip its PostGIS peer"

# DEMO=0 starts Arena without the demo race.
DEMO ?= 1
run: $(STAMP)
	$(BIN)/arena run $(if $(filter 1,$(DEMO)),--demo)

# Two workers, each with its own Ray cluster: on two cores the suite's waits overlap (TEST_WORKERS=0: one process).
TEST_WORKERS ?= 2
test: $(STAMP) system
	$(BIN)/ruff check .
	$(BIN)/mypy  # engine/, actors/, connectors/, serve/ ([tool.mypy] in pyproject.toml)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

bench-engine: $(STAMP)
	$(BIN)/python -m loadtest.bench_engine

bench-store: $(STAMP)
	$(BIN)/python -m loadtest.bench_store

bench-reco: $(STAMP)
	$(BIN)/python -m loadtest.reco_eval
	$(BIN)/python -m loadtest.bench_reco

bench-fanout: $(STAMP)
	$(BIN)/python -m loadtest.bench_fanout

bench-events: $(STAMP)
	$(BIN)/python -m loadtest.bench_events

bench-groups: $(STAMP)
	$(BIN)/python -m loadtest.bench_groups

bench-segments: $(STAMP) postgis
	$(BIN)/python -m loadtest.bench_segments

bench-challenge: $(STAMP)
	$(BIN)/python -m loadtest.bench_challenge

bench-race: $(STAMP)
	$(BIN)/python -m loadtest.bench_race

bench-board: $(STAMP)
	$(BIN)/python -m loadtest.bench_board

# 2,000 athletes x 30 minutes, run and ride, through the race entity: precision, recall, time to flag
bench-fairplay: $(STAMP)
	$(BIN)/python -m loadtest.fairplay --athletes 2000 --minutes 30

bench-mqtt: $(STAMP)
	$(BIN)/python -m loadtest.bench_mqtt --devices 5000 7500 10000 --seconds 30 --hub-processes 2

bench-ingress: $(STAMP)
	command -v wrk >/dev/null || $(APT) wrk || { apt-get update -qq && $(APT) wrk; }
	$(BIN)/python -m loadtest.bench_ingress

bench-push: $(STAMP)
	$(BIN)/python -m loadtest.bench_push

# Each starts its own throwaway Arena; reports in reports/.
load-athletes load-join-surge load-spectators load-devices load-race-day: load-%: $(STAMP)
	$(BIN)/python -m loadtest.scenarios $*

clean:
	rm -rf $(VENV) build *.egg-info
