# pgbridge — see README.md. `make run` starts the demo, `make test` runs
# everything CI runs.
SHELL := /bin/bash
GO    ?= go
STATICCHECK_VERSION ?= v0.8.2
export CGO_ENABLED ?= 1

PG_BIN := $(firstword $(wildcard /usr/lib/postgresql/*/bin))

.PHONY: all build test run lint fuzz deps driver-deps clean check-monitoring promtool-deps

all: build

build:
	$(GO) build -o bin/pgbridge ./cmd/pgbridge
	$(GO) build -o bin/pgbridge-demo ./cmd/pgbridge-demo

# deps makes sure the PostgreSQL server binaries, psql and pgbench exist.
# The tests start their own throwaway clusters; nothing is configured here.
deps:
	@if command -v initdb >/dev/null 2>&1 || [ -x "$(PG_BIN)/initdb" ]; then \
	  if command -v psql >/dev/null 2>&1 && command -v pgbench >/dev/null 2>&1; then exit 0; fi; \
	fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing PostgreSQL (apt-get install -y postgresql postgresql-client)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null; \
	else \
	  echo "PostgreSQL server binaries, psql and pgbench are needed."; \
	  echo "On Debian/Ubuntu run: sudo apt-get install -y postgresql postgresql-client"; \
	  exit 1; \
	fi

# driver-deps installs what the driver checks (proxy/drivers_test.go) run:
# psycopg 3 for the system Python, Java and the PostgreSQL JDBC driver
# (Debian packages), Node.js and node-postgres (npm ci, pinned by
# proxy/testdata/drivers/node/package-lock.json).
driver-deps:
	@need=""; \
	/usr/bin/python3 -c 'import psycopg' 2>/dev/null || need="$$need python3-psycopg"; \
	command -v java >/dev/null 2>&1 || need="$$need default-jre-headless"; \
	[ -f /usr/share/java/postgresql.jar ] || need="$$need libpostgresql-jdbc-java"; \
	{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || need="$$need nodejs npm"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing the driver checks' runtimes (apt-get install -y$$need)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	  else \
	    echo "The driver checks need:$$need"; \
	    echo "On Debian/Ubuntu run: sudo apt-get install -y$$need"; \
	    exit 1; \
	  fi; \
	fi
	@cd proxy/testdata/drivers/node && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; }

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# sockio picks system calls per OS and architecture: keep other builds honest.
	CGO_ENABLED=0 GOOS=linux GOARCH=386 $(GO) vet ./internal/sockio/
	CGO_ENABLED=0 GOOS=freebsd GOARCH=amd64 $(GO) vet ./internal/sockio/
	@# staticcheck at a fixed version, fetched through the Go module proxy
	@# and kept out of go.mod (it is a tool, not a dependency).
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# test is what CI runs: lint, every test with the race detector against
# real PostgreSQL, and the monitoring assets checked with promtool.
test: deps driver-deps lint
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory check-monitoring

run: deps build
	./bin/pgbridge-demo --pgbridge ./bin/pgbridge

# Short fuzzing runs of every fuzz target (the seed corpora run in `make test`).
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzServerExchange -fuzztime=30s ./internal/scram/
	$(GO) test -run='^$$' -fuzz=FuzzParseVerifier -fuzztime=30s ./internal/scram/
	$(GO) test -run='^$$' -fuzz=FuzzReader -fuzztime=30s ./proxy/internal/wire/
	$(GO) test -run='^$$' -fuzz=FuzzAnalyze -fuzztime=30s ./proxy/internal/sqllex/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=30s ./routing/

# check-monitoring validates deploy/monitoring and the exposition: promtool
# checks and unit-tests the alerting rules and lints the /metrics output of
# a sample snapshot (tenant labels on and folded), and the Go tests check
# that the dashboard and the rules select only series that are exported.
check-monitoring: promtool-deps
	promtool check rules deploy/monitoring/alerts.yml
	promtool test rules deploy/monitoring/alerts_test.yml
	set -o pipefail; $(GO) run ./metrics/internal/sample/expose | promtool check metrics
	set -o pipefail; $(GO) run ./metrics/internal/sample/expose -fold | promtool check metrics
	$(GO) test -count=1 -run 'Dashboard|AlertRules|ExpositionLint' ./metrics/

# promtool-deps makes sure promtool exists (Debian's prometheus package).
promtool-deps:
	@command -v promtool >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing promtool (apt-get install -y prometheus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else \
	  echo "promtool is needed. On Debian/Ubuntu run: sudo apt-get install -y prometheus"; \
	  exit 1; \
	fi

clean:
	rm -rf bin

# Load tests: direct PostgreSQL, PgBouncer and pgbridge side by side (see
# bench/README.md). The report goes to bench/results/<date>-<host>.md and
# .json. `make bench` takes about 25 minutes, `make bench-quick` about 2.
# Extra harness flags: make bench BENCH_FLAGS='-scenarios select-* -rounds 3'
.PHONY: bench bench-quick bench-deps gobench
BENCH_FLAGS ?=

bench: deps bench-deps build
	$(GO) build -o bin/loadgen ./bench/cmd/loadgen
	$(GO) build -o bin/compare ./bench/cmd/compare
	./bin/compare -pgbridge bin/pgbridge -loadgen bin/loadgen $(BENCH_FLAGS)

bench-quick: deps bench-deps build
	$(GO) build -o bin/loadgen ./bench/cmd/loadgen
	$(GO) build -o bin/compare ./bench/cmd/compare
	./bin/compare -quick -pgbridge bin/pgbridge -loadgen bin/loadgen $(BENCH_FLAGS)

# bench-deps installs PgBouncer when it is missing and we may (root on
# Debian/Ubuntu); otherwise the harness runs without it and says so.
bench-deps:
	@if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing PgBouncer (apt-get install -y pgbouncer)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; \
	  else \
	    echo "PgBouncer is not installed; the comparison runs without it."; \
	    echo "On Debian/Ubuntu run: sudo apt-get install -y pgbouncer"; \
	  fi; \
	fi

# Go benchmarks of the hot path (allocations reported).
gobench: deps
	$(GO) test -run='^$$' -bench=. -benchmem ./proxy/internal/wire/ ./proxy/internal/sqllex/ ./proxy/ ./pool/ ./internal/scram/
