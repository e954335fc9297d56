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
	$(GO) build -o bin/ ./tools/... ./services/gateway/cmd/... ./services/session/cmd/... ./services/notifier/cmd/... ./services/inventory/cmd/...

.PHONY: test
test: lint proto-lint verify-generated helm-lint ## lint, proto checks, the Helm chart test, then every test with the race detector; CI runs exactly this
	$(GO) test -race -count=1 $(PKGS)

.PHONY: test-integration
test-integration: ## only the tests named *Integration* (the inventory's fleet, redelivery and end-to-end tests; `make test` runs them too)
	$(GO) test -race -count=1 -run Integration $(PKGS)

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: bench
bench: ## codec benchmarks (ns/op, B/op, allocs/op) with the encoding/xml reference in the same run
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./pkg/syncml ./pkg/wbxml
	$(GO) test -run '^$$' -bench BenchmarkIngest -benchtime 200000x ./services/inventory
	$(GO) test -run '^$$' -bench BenchmarkQuery100k -benchtime 1000x ./services/inventory

.PHONY: loadtest
loadtest: ## load test on this machine (gateway + 2 workers, redis-server, nats-server; needs redis-server); LOADTEST_ARGS='-registered 8000 -grow-to 1000000'
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

# helm-lint: helm comes from the Go module proxy, built once into bin/helm-$(HELM_VERSION)
# with the link-time flags of helm's release builds (its version, and Kubernetes 1.37 — the
# client-go minor of helm v3.22 — as lint's default; update both minors with HELM_VERSION).
# The chart test (deploy/helm/chartcheck, its own module so the servers never depend on
# k8s.io) renders the chart itself and decodes every manifest strictly into the API types.
HELM_VERSION ?= v3.22.0
HELM_KUBE_VERSION ?= 1.37.0
HELM_BIN := bin/helm-$(HELM_VERSION)
HELM_CHART := deploy/helm/dmgrid
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37

$(HELM_BIN):
	@mkdir -p bin
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) -> $@"; \
	  GOBIN="$$tmp" GOWORK=off GOPROXY='$(PROTO_GOPROXY)' $(GO) install -trimpath -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	  mv "$$tmp/helm" $@

.PHONY: helm-lint
helm-lint: $(HELM_BIN) ## helm lint --strict and helm template the chart (defaults, production example), then the strict manifest test
	$(HELM_BIN) lint --strict --kube-version $(HELM_KUBE_VERSION) $(HELM_CHART)
	$(HELM_BIN) lint --strict --kube-version $(HELM_KUBE_VERSION) $(HELM_CHART) -f $(HELM_CHART)/examples/production-values.yaml
	$(HELM_BIN) template dmgrid $(HELM_CHART) --kube-version $(HELM_KUBE_VERSION) >/dev/null
	$(HELM_BIN) template dmgrid $(HELM_CHART) --kube-version $(HELM_KUBE_VERSION) -f $(HELM_CHART)/examples/production-values.yaml >/dev/null
	cd deploy/helm/chartcheck && HELM='$(abspath $(HELM_BIN))' HELM_VERSION=$(HELM_VERSION) KUBE_VERSION=$(HELM_KUBE_VERSION) $(GO) test -count=1 ./...

# image: the Dockerfile's image for this machine's platform with its default bases (golang,
# gcr.io/distroless/static-debian12:nonroot), so it needs a registry. image-offline builds the
# same Dockerfile where none is reachable: tools/image/build-offline.sh installs Debian's
# docker.io if needed, starts dockerd, makes equivalent bases from Debian packages and the
# host's Go, builds, and smoke-tests the image (SOURCE_REF=HEAD builds the last commit).
IMAGE  ?= dmgrid:dev
DOCKER ?= docker

.PHONY: image
image: ## docker build the image IMAGE (default dmgrid:dev) with its default bases (needs a registry)
	DOCKER_BUILDKIT=1 $(DOCKER) build --build-arg VERSION=$$(git describe --tags --always --dirty 2>/dev/null || echo dev) -t $(IMAGE) .

.PHONY: image-offline
image-offline: ## build IMAGE without a registry (bases from Debian packages and the host's Go), then smoke-test it
	IMAGE='$(IMAGE)' bash tools/image/build-offline.sh

.PHONY: clean
clean: ## remove build output
	rm -rf bin
