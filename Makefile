# pgshard: a PostgreSQL sharding proxy.
#
#   make demo    start a local coordinator, 4 workers and the proxy on 127.0.0.1:6432
#   make test    the whole test suite (real PostgreSQL servers, started by the tests)
#   make bench   the benchmarks (pgbench through the proxy, PgBouncer and direct)
#   make soak    the fault campaign for SOAK (default 30m) instead of 60 s

GO     ?= go
GOTEST ?= $(GO) test -race -count=1 -timeout 45m
APT    := DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: all build demo test unit vet deps deps-pg compose-check bench soak clean

all: build

build:
	$(GO) build -o bin/pgshard ./cmd/pgshard

demo: deps-pg build
	./bin/pgshard demo

test: deps vet compose-check
	$(GOTEST) ./...

# Unit tests only (no PostgreSQL servers).
unit:
	$(GO) test -short -count=1 ./...

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

deps: deps-pg

# The PostgreSQL server binaries (initdb, postgres) and psql: installed with apt-get when
# missing and running as root on Debian/Ubuntu; otherwise we say what to install.
deps-pg:
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || [ -n "$$PGSHARD_PGBIN" ]; then \
		command -v psql >/dev/null || { echo "psql not found: install postgresql-client"; exit 1; }; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing PostgreSQL (apt-get install postgresql)..."; \
		$(APT) update -qq && $(APT) install -y -qq postgresql >/dev/null; \
	else \
		echo "PostgreSQL server binaries not found."; \
		echo "Install them (Debian/Ubuntu: sudo apt-get install postgresql), or set PGSHARD_PGBIN to the directory holding initdb and postgres."; \
		exit 1; \
	fi

# docker-compose.yml cannot be started here (no Docker engine); validate it instead.
compose-check:
	@if ! command -v docker-compose >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			$(APT) install -y -qq docker-compose >/dev/null 2>&1 || { $(APT) update -qq && $(APT) install -y -qq docker-compose >/dev/null; }; \
		else \
			echo "docker-compose not installed: skipping the docker-compose.yml check"; exit 0; \
		fi; \
	fi; \
	docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"

bench: deps-pg
	@command -v pgbouncer >/dev/null || [ "$$(id -u)" != 0 ] || $(APT) install -y -qq pgbouncer >/dev/null || { $(APT) update -qq && $(APT) install -y -qq pgbouncer >/dev/null; }
	$(GO) run ./tests/bench $(BENCHFLAGS)

# The randomized fault campaign of tests/faults, run for $(SOAK).
SOAK ?= 30m
soak: deps-pg
	PGSHARD_SOAK=$(SOAK) $(GO) test -race -count=1 -timeout 0 -run TestFaultCampaign -v ./tests/faults/

clean:
	rm -rf bin
