# Arena: `make run` starts it, `make test` tests it. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test bench-engine bench-fanout bench-race bench-board bench-mqtt load-athletes setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# DEMO=0 starts Arena without the demo race.
DEMO ?= 1
run: $(STAMP)
	$(BIN)/arena run $(if $(filter 1,$(DEMO)),--demo)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

bench-engine: $(STAMP)
	$(BIN)/python -m loadtest.bench_engine

bench-fanout: $(STAMP)
	$(BIN)/python -m loadtest.bench_fanout

bench-race: $(STAMP)
	$(BIN)/python -m loadtest.bench_race

bench-board: $(STAMP)
	$(BIN)/python -m loadtest.bench_board

bench-mqtt: $(STAMP)
	$(BIN)/python -m loadtest.bench_mqtt --devices 2000 5000 --seconds 20

# Needs Arena running (make run) at ARENA_URL.
ARENA_URL ?= http://127.0.0.1:8000
load-athletes: $(STAMP)
	mkdir -p reports
	$(BIN)/locust -f loadtest/locustfile.py --headless -u 20 -r 5 -t 60s --host $(ARENA_URL) \
		--csv reports/athletes --html reports/athletes.html --only-summary

clean:
	rm -rf $(VENV) build *.egg-info
