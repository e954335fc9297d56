# syntax=docker/dockerfile:1
#
# One small image with every dmgrid binary; each Kubernetes Deployment picks its binary with
# `command` (the Helm chart in deploy/helm/dmgrid does):
#
#   /usr/local/bin/dmgrid-gateway     device-facing HTTP(S) gateway
#   /usr/local/bin/dmgrid-session     session workers (gRPC)
#   /usr/local/bin/dmgrid-inventory   inventory (gRPC, JetStream consumer)
#   /usr/local/bin/dmgrid-notifier    notifier (gRPC, Package 0 over WAP Push/SMS)
#
# Build:  docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/dmgrid/dmgrid:<tag> .
#         (`make image` builds for this machine's platform)
# Run:    docker run --rm -e DMGRID_SESSION_ADDR=... ghcr.io/dmgrid/dmgrid:<tag> dmgrid-gateway
#
# Without a registry (no Docker Hub, no gcr.io): `make image-offline` runs
# tools/image/build-offline.sh, which builds equivalents of both base images from Debian
# packages and the host's Go, passes them in as BUILD_IMAGE and RUNTIME_IMAGE, and feeds this
# file without its syntax line (that frontend image is on Docker Hub; the daemon's built-in
# frontend, Docker 20.10's there, builds everything below, RUN --mount=type=cache included).
#
# Static binaries (CGO_ENABLED=0) on distroless/static: no shell, no package manager, CA
# certificates and tzdata included, uid/gid 65532 ("nonroot"). There is deliberately no
# ENTRYPOINT: the image does not guess a tier.

ARG GO_VERSION=1.26
# The base images. The defaults are the ones releases use; override them only where those
# cannot be pulled (tools/image/build-offline.sh passes locally built equivalents).
ARG BUILD_IMAGE=golang:${GO_VERSION}
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS build
WORKDIR /src
# The servers build from the root module alone (.dockerignore sends only go.mod, go.sum,
# proto/, pkg/, internal/ and services/): go.work also joins modules that are not in the
# context (deploy/helm/chartcheck), and the root go.mod already replaces the proto module
# with ./proto.
ENV GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Optional module proxy and checksum database settings (e.g. a company proxy); unset, the
# build image's defaults apply (proxy.golang.org, sum.golang.org).
ARG GOPROXY GOSUMDB GONOSUMDB GOPRIVATE
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
COPY proto/go.mod proto/go.sum ./proto/
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS TARGETARCH
# Fails when a tier's main package is missing, rather than shipping an image without it.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/ \
      ./services/gateway/cmd/dmgrid-gateway \
      ./services/session/cmd/dmgrid-session \
      ./services/inventory/cmd/dmgrid-inventory \
      ./services/notifier/cmd/dmgrid-notifier

# Pin by digest in release builds (RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:...).
FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="dmgrid" \
      org.opencontainers.image.description="OMA DM 1.2.1 (SyncML DM) server: gateway, session workers, inventory, notifier" \
      org.opencontainers.image.source="https://github.com/dmgrid/dmgrid" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# gateway HTTP, gRPC APIs, Prometheus metrics (DMGRID_HTTP_ADDR, DMGRID_GRPC_ADDR, DMGRID_METRICS_ADDR).
EXPOSE 8080 9090 9102
