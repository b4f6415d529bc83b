# bouncer: the common commands. `make help` lists them.
SHELL := /usr/bin/env bash
GO ?= go
BIN := bin/bouncer

.PHONY: help build test unit demo demo-down demo-check bench fuzz services-up services-down clean ui browser-test screenshots bench-stats

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## build bin/bouncer
	$(GO) build -o $(BIN) ./cmd/bouncer

test: ## everything CI runs: services up, go test ./... (race), fault tests, services down
	scripts/test

unit: ## fast tests only (integration tests skip without services)
	$(GO) test -count=1 ./...

ui: ## rebuild the dashboard (web/) into api/uiassets, which is committed
	@if [ ! -e web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then npm ci --prefix web --no-audit --no-fund; fi
	npm --prefix web run build

browser-test: ## the dashboard in headless Chromium (installs chromium and npm packages if missing)
	test/browser/run

screenshots: ## the browser test, saving docs/screenshots/*.png
	test/browser/run --screenshots

demo: build ## the whole product here: services, api + dashboard + key, worker, a webhook receiver, 200k events
	scripts/demo

demo-down: ## stop the demo's api, worker, webhook receiver and services
	scripts/demo down

demo-check: ## log in to the running demo's dashboard in headless Chromium with its key (test/browser/run --demo --screenshots saves docs/screenshots/demo.png)
	test/browser/run --demo

bench: build ## bouncer vs ClickHouse's Kafka engine (1, 2, 4 consumers), 1M events, 3 runs, CPU per event (own service instance)
	scripts/bench

bench-stats: ## stats, dashboard and activity query latency over 100M events (BOUNCER_BENCH_EVENTS, BOUNCER_BENCH_ITERATIONS, BOUNCER_BENCH_QUERIES; instance benchstats keeps the data)
	eval "$$(scripts/services up --name benchstats)" && export CLICKHOUSE_ADDR && \
		$(GO) test -run '^$$' -bench StatsQueries -benchtime 1x -timeout 240m -v ./sinks/clickhouse/
	@echo "the generated events stay in .services/benchstats for the next run; scripts/services down --name benchstats removes them"

fuzz: ## fuzz the decoder and the classifier for a minute each
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 60s ./schemas/
	$(GO) test -run '^$$' -fuzz FuzzClassify -fuzztime 60s ./enrich/

clean: ## remove build output and stopped service folders
	rm -rf bin
