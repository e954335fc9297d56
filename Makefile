# dmgrid — the Makefile is the entry point; `make help` lists the targets.
SHELL := /usr/bin/env bash
GO    ?= go
PKGS  := ./... ./proto/...

# Fuzz targets as package:target pairs; `make fuzz-smoke` runs each for FUZZTIME.
FUZZ_TARGETS := \
	./pkg/syncml:FuzzDecodeXML \
	./pkg/syncml:FuzzDecodeWBXML \
	./pkg/wbxml:FuzzDecoder \
	./pkg/dmauth:FuzzParseHMACHeader \
	./pkg/dmtree:FuzzParseURI \
	./pkg/dmtree:FuzzParseACL \
	./pkg/pkg0:FuzzParse \
	./pkg/wappush:FuzzParsePushPDU \
	./pkg/wappush:FuzzParseUDH \
	./pkg/wappush:FuzzReassembler \
	./pkg/smpp:FuzzDecode
FUZZTIME ?= 30s
BENCHTIME ?= 1s

.PHONY: help
help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## start all of dmgrid in one process (embedded NATS and Redis-protocol server unless DMGRID_REDIS_URL/DMGRID_NATS_URL are set)
	$(GO) run ./tools/devstack $(RUN_ARGS)

.PHONY: build
build: ## build the binaries into ./bin
	$(GO) build -o bin/ ./tools/... ./services/gateway/cmd/... ./services/session/cmd/...

.PHONY: test
test: lint proto-lint verify-generated ## lint, proto checks, then every test with the race detector; CI runs exactly this
	$(GO) test -race -count=1 $(PKGS)

.PHONY: test-integration
test-integration: ## integration tests (none yet beyond `make test`: no services exist so far)
	$(GO) test -race -count=1 -run Integration $(PKGS)

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: bench
bench: ## codec benchmarks (ns/op, B/op, allocs/op) with the encoding/xml reference in the same run
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./pkg/syncml ./pkg/wbxml

.PHONY: loadtest
loadtest: ## load test on this machine (gateway, 2 workers, redis-server, NATS; needs redis-server); LOADTEST_ARGS='-registered 100000'
	$(GO) run ./tools/loadtest $(LOADTEST_ARGS)

.PHONY: fuzz-smoke
fuzz-smoke: ## run every fuzz target for FUZZTIME (default 30s); crashers land in testdata/fuzz/
	@set -e; for pt in $(FUZZ_TARGETS); do \
	  pkg=$${pt%%:*}; fn=$${pt##*:}; \
	  echo "== $$fn ($$pkg)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# proto: buf and the protoc plugins (pinned in proto/buf.gen.yaml) run through `go run
# pkg@version`: nothing to install, and buf has its own compiler (no protoc). `go run
# pkg@version` asks the proxy about deprecations even when the module is cached, so the tool
# runs put the module cache's download directory in front of GOPROXY: after the first download
# generation works offline. Lazy `=` so plain targets do not pay for `go env`.
PROTO_GOPROXY = file://$(shell $(GO) env GOMODCACHE)/cache/download,$(shell $(GO) env GOPROXY)
BUF = GOPROXY='$(PROTO_GOPROXY)' $(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0

.PHONY: generate
generate: ## regenerate generated code: go generate, then the protos' Go beside each .proto
	$(GO) generate ./...
	@# Generate into a scratch directory first, so a failed run leaves the tree as it was and
	@# the .pb.go of a deleted .proto does not survive.
	@set -e; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	  echo "cd proto && buf generate"; \
	  (cd proto && $(BUF) generate --output "$$out"); \
	  find proto/dmgrid -name '*.pb.go' -delete; \
	  (cd "$$out" && find . -name '*.pb.go' -exec cp --parents {} "$(CURDIR)/proto/" \;)
	cd proto && $(GO) mod tidy

.PHONY: proto-lint
proto-lint: ## buf lint the protos (buf style STANDARD + COMMENTS, see proto/buf.yaml) and check buf format
	cd proto && $(BUF) lint
	cd proto && $(BUF) format --diff --exit-code

.PHONY: verify-generated
verify-generated: generate ## fail when the committed generated code in proto/ is stale or missing
	@git diff --exit-code -- proto/ && test -z "$$(git status --porcelain -- proto/)" || { \
	  echo "generated code is stale or not committed: run make generate and commit:"; \
	  git status --porcelain -- proto/; exit 1; }

.PHONY: clean
clean: ## remove build output
	rm -rf bin
