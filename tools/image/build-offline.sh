#!/usr/bin/env bash
# build-offline.sh — build the dmgrid image and smoke-test it on a machine that reaches no
# container registry (no Docker Hub, no gcr.io), only Debian's packages and the Go module
# proxy. `make image-offline` runs it; `make image` is the ordinary build for machines that
# can pull golang:<ver> and gcr.io/distroless/static-debian12:nonroot.
#
# What it does, each step skipped when already done:
#   1. installs Debian's docker.io (dockerd, containerd, runc), debootstrap and file, and
#      starts dockerd in the background when no daemon answers (it is left running);
#   2. builds the two base images locally, from Debian packages and the host's Go:
#        local/debian:bookworm   debootstrap --variant=minbase (+ ca-certificates, tzdata)
#        local/golang:<go ver>   local/debian + a copy of the host's GOROOT, laid out like the
#                                official golang image (GOPATH=/go, GOTOOLCHAIN=local), and
#                                the host's CA bundle (to reach the module proxy as it does)
#        local/static:nonroot    the distroless static nonroot equivalent: no shell, only
#                                /etc/passwd and /etc/group (nonroot = 65532), nsswitch.conf,
#                                the CA bundle, /usr/share/zoneinfo, /tmp, /home/nonroot;
#                                USER 65532, WORKDIR /home/nonroot
#   3. builds the repository's Dockerfile with BUILD_IMAGE/RUNTIME_IMAGE set to those, the
#      host's GOPROXY/GOSUMDB/GONOSUMDB/GOPRIVATE as build args and the host network (for the
#      module proxy);
#   4. smoke-tests the image: user 65532, each binary's --help, the binaries are static, the
#      gateway's /healthz and /readyz, and (unless SMOKE_SESSION=0) a session worker against
#      the host's Redis with one real device message through the gateway.
# It prints the image size and exits non-zero at the first failure.
#
# The Dockerfile's `# syntax=docker/dockerfile:1` line makes BuildKit pull the Dockerfile
# frontend from Docker Hub, which cannot work here, so the Dockerfile is fed on stdin with
# that one line removed: the daemon's built-in frontend builds it (it supports everything
# the file uses, RUN --mount=type=cache included). Nothing else is changed.
#
# Settings (environment): IMAGE (dmgrid:offline), DEBIAN_MIRROR, DOCKERD_ARGS (extra dockerd
# flags, e.g. "--iptables=false --bridge=none --storage-driver=vfs"), REBUILD_BASES=1 (build
# the local bases again), SOURCE_REF (build a commit, e.g. HEAD, instead of the working
# tree), SMOKE_SESSION=0 (skip the Redis-backed checks), REDIS_URL
# (redis://127.0.0.1:6379/15), SMOKE_PORT_BASE (18000: the smoke containers listen on
# 127.0.0.1 at base+80 gateway HTTP, +102 gateway metrics, +90 session gRPC, +103 session
# metrics).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

IMAGE=${IMAGE:-dmgrid:offline}
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_IMAGE=local/debian:$SUITE
RUNTIME_IMAGE=local/static:nonroot
SMOKE_SESSION=${SMOKE_SESSION:-1}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}
PORT_BASE=${SMOKE_PORT_BASE:-18000}
GW_HTTP=127.0.0.1:$((PORT_BASE + 80))
GW_METRICS=127.0.0.1:$((PORT_BASE + 102))
SESSION_GRPC=127.0.0.1:$((PORT_BASE + 90))
SESSION_METRICS=127.0.0.1:$((PORT_BASE + 103))

log() { printf '\n== %s\n' "$*"; }
die() { printf 'build-offline: FAIL: %s\n' "$*" >&2; exit 1; }

# --- 1. tools and the Docker engine -------------------------------------------------------

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v file >/dev/null || need_pkgs+=(file)
command -v curl >/dev/null || need_pkgs+=(curl)
if ((${#need_pkgs[@]})); then
  log "apt-get install ${need_pkgs[*]}"
  [ "$(id -u)" = 0 ] || die "installing ${need_pkgs[*]} needs root"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}"
fi

# `docker build` needs BuildKit (the Dockerfile uses RUN --mount). A docker CLI with the
# buildx plugin has it; without the plugin, newer CLIs refuse BuildKit builds, so fall back
# to Debian's docker.io CLI (/usr/bin/docker, 20.10), which talks to the daemon's built-in
# BuildKit itself. DOCKER overrides the choice.
if [ -z "${DOCKER:-}" ]; then
  if docker buildx version >/dev/null 2>&1; then DOCKER=docker
  elif [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker
  else die "no docker CLI with BuildKit: install docker.io or the buildx plugin"
  fi
fi
export DOCKER_BUILDKIT=1
echo "docker CLI: $DOCKER ($("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null || echo '?'))"

if ! "$DOCKER" info >/dev/null 2>&1; then
  log "starting dockerd ${DOCKERD_ARGS:-} (log: /var/log/dockerd-dmgrid.log)"
  # setsid: the daemon outlives this script, as a system service would.
  # shellcheck disable=SC2086 # DOCKERD_ARGS is a list of flags
  setsid dockerd ${DOCKERD_ARGS:-} >/var/log/dockerd-dmgrid.log 2>&1 < /dev/null &
  for _ in $(seq 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! "$DOCKER" info >/dev/null 2>&1; then
    tail -n 30 /var/log/dockerd-dmgrid.log >&2 || true
    die "dockerd did not come up (see above; DOCKERD_ARGS='--iptables=false --bridge=none --storage-driver=vfs' may help)"
  fi
fi
"$DOCKER" version --format 'daemon: {{.Server.Version}} (API {{.Server.APIVersion}})'

# --- 2. local base images -----------------------------------------------------------------

have_image() { [ "${REBUILD_BASES:-0}" != 1 ] && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

command -v go >/dev/null || die "no go on PATH: the build image copies the host's Go"
GOROOT_HOST=$(go env GOROOT)
GO_FULL=$(go env GOVERSION) # go1.26.8
GO_FULL=${GO_FULL#go}
BUILD_IMAGE=local/golang:$GO_FULL

tmp=$(mktemp -d)
containers=()
cleanup() {
  if ((${#containers[@]})); then "$DOCKER" rm -f "${containers[@]}" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if ! have_image "$DEBIAN_IMAGE"; then
  log "debootstrap $SUITE -> $DEBIAN_IMAGE"
  rootfs=$tmp/rootfs
  debootstrap --variant=minbase --include=ca-certificates,tzdata "$SUITE" "$rootfs" "$DEBIAN_MIRROR" \
    >"$tmp/debootstrap.log" 2>&1 || { tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -c . |
    "$DOCKER" import -c 'CMD ["/bin/bash"]' -m "debootstrap --variant=minbase $SUITE $DEBIAN_MIRROR" - "$DEBIAN_IMAGE"
  rm -rf "$rootfs"
fi

if ! have_image "$BUILD_IMAGE"; then
  log "$BUILD_IMAGE: $DEBIAN_IMAGE + the host's Go ($GOROOT_HOST, go$GO_FULL)"
  mkdir "$tmp/golang"
  cp -a "$GOROOT_HOST" "$tmp/golang/go"
  # The build container reaches the Go module proxy the way the host does, so it trusts what
  # the host trusts: the host's CA bundle replaces Debian's in this (local-only) build image.
  # Where the host reaches the proxy through a TLS-intercepting egress proxy, as here, `go mod
  # download` fails with "x509: certificate signed by unknown authority" without it. The
  # runtime base below keeps Debian's bundle: nothing host-specific reaches the image.
  cp /etc/ssl/certs/ca-certificates.crt "$tmp/golang/ca-certificates.crt"
  # The official golang image's layout, so the Dockerfile's cache mounts
  # (/go/pkg/mod, /root/.cache/go-build) mean the same thing.
  cat >"$tmp/golang/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
COPY go /usr/local/go
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV GOLANG_VERSION=$GO_FULL GOTOOLCHAIN=local GOPATH=/go \\
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /go/src /go/bin && chmod -R 1777 /go && go version
WORKDIR /go
EOF
  "$DOCKER" build --progress=plain -t "$BUILD_IMAGE" "$tmp/golang"
  rm -rf "$tmp/golang"
fi

if ! have_image "$RUNTIME_IMAGE"; then
  log "$RUNTIME_IMAGE: scratch + passwd/group (nonroot 65532), CA bundle and tzdata from $DEBIAN_IMAGE"
  # Assembled inside a Debian container (root there, so ownership is right), then streamed
  # out as a tar into `docker import`.
  # shellcheck disable=SC2016 # the script is expanded by the container's sh
  "$DOCKER" run --rm --network none "$DEBIAN_IMAGE" sh -euc '
    r=$(mktemp -d)
    mkdir -p "$r/etc/ssl/certs" "$r/usr/share/doc" "$r/usr/local/bin" "$r/tmp" "$r/root" "$r/home/nonroot"
    printf "%s\n" "root:x:0:0:root:/root:/sbin/nologin" \
      "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin" \
      "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >"$r/etc/passwd"
    printf "%s\n" "root:x:0:" "nobody:x:65534:" "tty:x:5:" "staff:x:50:" "nonroot:x:65532:" >"$r/etc/group"
    printf "%s\n" "hosts: files dns" >"$r/etc/nsswitch.conf"
    printf "%s\n" "PRETTY_NAME=\"dmgrid local static base (Debian 12 files)\"" "ID=debian" "VERSION_ID=\"12\"" >"$r/etc/os-release"
    cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
    cp -a /usr/share/zoneinfo "$r/usr/share/"
    for p in ca-certificates tzdata; do
      mkdir -p "$r/usr/share/doc/$p" && cp "/usr/share/doc/$p/copyright" "$r/usr/share/doc/$p/"
    done
    chmod 1777 "$r/tmp"; chmod 700 "$r/root" "$r/home/nonroot"
    chown 65532:65532 "$r/home/nonroot"
    tar --numeric-owner -C "$r" -cf - .
  ' >"$tmp/static.tar"
  "$DOCKER" import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    -c 'USER 65532' -c 'WORKDIR /home/nonroot' \
    -m 'distroless static nonroot equivalent, from Debian 12 ca-certificates and tzdata' \
    "$tmp/static.tar" "$RUNTIME_IMAGE"
  rm -f "$tmp/static.tar"
fi

# --- 3. the image -------------------------------------------------------------------------

build_args=(--build-arg "BUILD_IMAGE=$BUILD_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE")
for v in GOPROXY GOSUMDB GONOSUMDB GOPRIVATE; do
  val=$(go env "$v")
  [ -z "$val" ] || build_args+=(--build-arg "$v=$val")
done
# The build context: the working tree, or with SOURCE_REF a commit's tree (git archive), for
# a build that edits in progress cannot break. The Dockerfile is the working tree's.
context=$ROOT
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
if [ -n "${SOURCE_REF:-}" ]; then
  context=$tmp/src
  mkdir "$context"
  git archive "$SOURCE_REF" | tar -x -C "$context"
  version=$(git describe --tags --always "$SOURCE_REF")
fi
build_args+=(--build-arg "VERSION=$version")

log "docker build -t $IMAGE from $context (${build_args[*]})"
sed '1{/^# syntax=/d}' Dockerfile |
  "$DOCKER" build --progress=plain --network host "${build_args[@]}" -t "$IMAGE" -f - "$context"

# --- 4. smoke tests -----------------------------------------------------------------------

log "smoke: image configuration"
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
user=$("$DOCKER" image inspect -f '{{.Config.User}}' "$IMAGE")
echo "size: $size bytes ($((size / 1024 / 1024)) MiB); user: $user"
[ "$user" = 65532:65532 ] || die "image user is '$user', want 65532:65532"

bins=(dmgrid-gateway dmgrid-session dmgrid-inventory dmgrid-notifier)
for b in "${bins[@]}"; do
  log "smoke: $b --help"
  out=$("$DOCKER" run --rm --network none "$IMAGE" "$b" --help) || die "$b --help exited $?"
  printf '%s\n' "$out" | head -n 4
  grep -q "^usage: $b " <<<"$out" || die "$b --help printed no usage line"
done

log "smoke: the binaries are static"
cid=$("$DOCKER" create "$IMAGE" dmgrid-gateway)
containers+=("$cid")
"$DOCKER" cp "$cid:/usr/local/bin/." "$tmp/bin"
for b in "${bins[@]}"; do
  f=$(file -b "$tmp/bin/$b")
  echo "$b: $f"
  grep -q 'statically linked' <<<"$f" || die "$b is not statically linked"
  if ldd "$tmp/bin/$b" >/dev/null 2>&1; then die "ldd finds shared libraries in $b"; fi
done

# Poll an URL until it answers (any HTTP status) or 20 s pass; prints the status code.
http_status() {
  local code
  for _ in $(seq 40); do
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' "$@" || true)
    [ "$code" != 000 ] && { echo "$code"; return; }
    sleep 0.5
  done
  echo 000
}
# A client's first message (package 1) from the codec's golden files.
DM_MSG=$ROOT/pkg/syncml/testdata/golden/01_pkg1_client_init.xml
post_dm() { http_status -X POST -H 'Content-Type: application/vnd.syncml.dm+xml' --data-binary "@$DM_MSG" "http://$GW_HTTP/dm"; }

log "smoke: gateway (session workers at $SESSION_GRPC, not up yet)"
# The smoke containers use the host network: everything stays on 127.0.0.1.
gw=dmgrid-smoke-gateway-$$
containers+=("$gw")
"$DOCKER" run -d --name "$gw" --network host \
  -e DMGRID_HTTP_ADDR="$GW_HTTP" -e DMGRID_METRICS_ADDR="$GW_METRICS" -e DMGRID_SESSION_ADDR="$SESSION_GRPC" \
  "$IMAGE" dmgrid-gateway >/dev/null
code=$(http_status "http://$GW_HTTP/healthz")
echo "GET /healthz -> $code $(cat "$tmp/body" 2>/dev/null)"
[ "$code" = 200 ] || { "$DOCKER" logs "$gw" >&2; die "gateway /healthz answered $code"; }
code=$(http_status "http://$GW_HTTP/readyz")
echo "GET /readyz -> $code $(cat "$tmp/body")"
[ "$code" = 200 ] || die "gateway /readyz answered $code"
code=$(http_status "http://$GW_METRICS/metrics")
echo "GET metrics /metrics -> $code ($(grep -c '^dmgrid_' "$tmp/body" || true) dmgrid_* lines)"
[ "$code" = 200 ] || die "gateway metrics answered $code"
# The image has no shell (no `id`): ask the host's ps about the container's process.
procs=$("$DOCKER" top "$gw" -o pid,uid,gid,comm)
printf '%s\n' "$procs"
awk 'NR > 1 && ($2 != 65532 || $3 != 65532) { bad = 1 } END { exit bad || NR < 2 }' <<<"$procs" ||
  die "gateway does not run as uid/gid 65532"
code=$(post_dm)
echo "POST /dm (no session worker) -> $code $(head -c 200 "$tmp/body")"
[ "$code" = 503 ] || die "a device message without session workers answered $code, want 503"

if [ "$SMOKE_SESSION" != 0 ]; then
  log "smoke: session worker against $REDIS_URL"
  # Its own key prefix; the unknown device's message leaves one rate-limit key (60 s TTL).
  # No DMGRID_NATS_URL: events stay in the Redis outbox, and nothing touches JetStream.
  ss=dmgrid-smoke-session-$$
  containers+=("$ss")
  "$DOCKER" run -d --name "$ss" --network host \
    -e DMGRID_GRPC_ADDR="$SESSION_GRPC" -e DMGRID_METRICS_ADDR="$SESSION_METRICS" \
    -e DMGRID_REDIS_URL="$REDIS_URL" -e DMGRID_REDIS_PREFIX="dmgrid-image-smoke-$$" \
    "$IMAGE" dmgrid-session >/dev/null
  code=$(http_status "http://$SESSION_METRICS/metrics")
  echo "GET session metrics /metrics -> $code"
  [ "$code" = 200 ] || { "$DOCKER" logs "$ss" >&2; die "session metrics answered $code"; }
  # The gateway reconnects on its own; retry the message until the worker is reached.
  for _ in $(seq 20); do
    code=$(post_dm)
    [ "$code" != 503 ] && break
    sleep 0.5
  done
  echo "POST /dm (session worker up) -> $code $(head -c 300 "$tmp/body")"
  if [ "$code" != 200 ] || ! grep -q '<SyncML' "$tmp/body"; then
    "$DOCKER" logs "$ss" >&2
    die "a device message through gateway and session answered $code"
  fi
  "$DOCKER" logs "$ss" 2>&1 | tail -n 3
fi

log "OK: $IMAGE, $size bytes ($((size / 1024 / 1024)) MiB), user $user"
