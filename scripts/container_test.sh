#!/usr/bin/env bash
# container_test.sh — build the CPU variant of the Dockerfile with podman and run it the way an
# operator would, with no registry: the base is a Debian 12 root made by debootstrap and turned
# into a local image with `podman import`.
#
#   scripts/container_test.sh [--client PATH] [--keep]
#
#   --client PATH  the host's vlmserve-client (default build/bin/vlmserve-client; else the one on
#                  PATH). The Predict comes from the host, through the published port.
#   --keep         build into podman's own store and leave localhost/vlmserve:cpu-test there
#                  (default: a private store in the temp dir, removed at the end)
#
# Steps (each timed): debootstrap bookworm (minbase) → `podman import` → a probe `podman run` →
# `podman build --format docker --build-arg VARIANT=cpu` (OCI format would drop HEALTHCHECK) →
# image checks (user 10001, port 50051, HEALTHCHECK, STOPSIGNAL) → run with the port published on
# 127.0.0.1 → `podman healthcheck run` until healthy and `vlmserve-client health` from the host →
# a Predict from the host with a real frame grid → SIGTERM, exit 0 within the image's drain
# timeout (8 s) plus 2 s. Prints both images' sizes.
#
# Where podman's default OCI runtime cannot run here (crun refuses cgroup v1/hybrid hosts, and the
# default ulimits may exceed the sandbox's hard limits), the test writes a containers.conf in its
# temp dir (runc; nofile at the host's hard limit, nproc 4096) and uses that. It SKIPs — printed, exit 0 —
# only when podman, runc or debootstrap cannot be installed, or when the probe run fails with
# both configurations. Anything after the probe that fails, fails the test.
#
# Needs root (debootstrap, podman's root storage) and Debian's mirror (the base, and the image's
# own apt installs). On a Debian 12 host the base gets the host's apt sources and apt.conf.d, so
# the image reaches the same mirror CI does. ~6–8 min on 2 cores, most of it the C++ build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLIENT=""
KEEP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --client) CLIENT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "container_test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

T0=$(date +%s)
step() { printf '[container %4ds] %s\n' $(( $(date +%s) - T0 )) "$*"; }
skip() { echo "container_test.sh: SKIP: $*"; exit 0; }
fail() { echo "container_test.sh: FAIL: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || skip "needs root (debootstrap and podman's root storage); run it as root"

# --- tools ------------------------------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
if (( ${#missing[@]} )); then
  step "installing ${missing[*]}"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}" uidmap slirp4netns; } >/dev/null 2>&1 \
    || skip "could not install ${missing[*]} with apt-get"
fi

if [[ -z "$CLIENT" ]]; then
  if [[ -x "$ROOT/build/bin/vlmserve-client" ]]; then CLIENT="$ROOT/build/bin/vlmserve-client"
  else CLIENT="$(command -v vlmserve-client || true)"; fi
fi
[[ -n "$CLIENT" && -x "$CLIENT" ]] || fail "no host vlmserve-client (build it, or pass --client PATH)"

WORK="$(mktemp -d /var/tmp/vlmserve-container.XXXXXX)"
TAG="$(basename "$WORK" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')"
BASE="localhost/vlmserve-base:$TAG"
IMAGE="localhost/vlmserve:cpu-test"
NAME="vlmserve-test-$TAG"
# A private image store in the temp dir: the base, the build stage's layers and the image go away
# with it and nothing of the host's own podman images is touched (--keep uses the host's store).
PM=(podman)
[[ $KEEP == 1 ]] || PM=(podman --root "$WORK/storage" --runroot "$WORK/run")
pm() { "${PM[@]}" "$@"; }
cleanup() {
  pm rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  pm rmi -f "$BASE" >/dev/null 2>&1 || true
  if [[ $KEEP != 1 ]]; then
    pm rmi -af >/dev/null 2>&1 || true
    # the store's own mounts (overlay keeps one on its directory) before removing it
    awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
  fi
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

# --- the base: Debian 12 from debootstrap, no registry ------------------------------------------
MIRROR="${VLMSERVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
step "debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed (log above)"; }
if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
  # The host is Debian 12 too: give the image the host's mirrors and apt settings (a proxy or a
  # snapshot mirror configured here is what the image's apt-get must use as well).
  cp -a /etc/apt/sources.list.d/. "$WORK/rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
  [[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$WORK/rootfs/etc/apt/sources.list"
  cp -a /etc/apt/apt.conf.d/. "$WORK/rootfs/etc/apt/apt.conf.d/" 2>/dev/null || true
fi
rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
step "podman import → $BASE"
tar -C "$WORK/rootfs" -c . | pm import - "$BASE" >/dev/null 2>&1
rm -rf "$WORK/rootfs"

# --- can podman run containers here? --------------------------------------------------------------
probe() { timeout 120 "${PM[@]}" run --rm "$BASE" /bin/true >"$WORK/probe.log" 2>&1; }
if probe; then
  step "probe run: ok with podman's default configuration"
else
  step "probe run with the default configuration failed: $(tail -1 "$WORK/probe.log")"
  # crun refuses cgroup v1/hybrid hosts; runc runs there. podman's default ulimits (nofile
  # 1048576, nproc 4194304) can exceed a sandbox's hard limits: ask for the host's nofile, and
  # 4096 processes (a sandbox seen here refused even its own nproc hard limit; the server runs a
  # few dozen threads).
  cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
  export CONTAINERS_CONF="$WORK/containers.conf"
  probe || skip "podman cannot run a container here, with crun nor with runc: $(tail -1 "$WORK/probe.log")"
  step "probe run: ok with runc and the host's ulimits ($WORK/containers.conf)"
fi

# --- build ------------------------------------------------------------------------------------
step "podman build --format docker --build-arg VARIANT=cpu (log: build.log)"
B0=$(date +%s)
if ! pm build --format docker --build-arg VARIANT=cpu --build-arg "CPU_BASE=$BASE" \
       -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  fail "podman build failed (last lines above)"
fi
step "built in $(( $(date +%s) - B0 ))s"

inspect() { pm image inspect --format "$1" "$IMAGE"; }
[[ "$(inspect '{{.Config.User}}')" == 10001 ]] || fail "the image does not run as uid 10001"
inspect '{{json .Config.ExposedPorts}}' | grep -q '50051/tcp' || fail "port 50051 is not exposed"
inspect '{{json .Config.Healthcheck}}' | grep -q 'vlmserve-client' \
  || fail "the image has no HEALTHCHECK with vlmserve-client (built as OCI?)"
[[ "$(inspect '{{.Config.StopSignal}}')" == SIGTERM ]] || fail "STOPSIGNAL is not SIGTERM"
mb() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1e6 }'; }
SIZE_BASE=$(pm image inspect --format '{{.Size}}' "$BASE")
SIZE_IMAGE=$(inspect '{{.Size}}')
step "image sizes: CPU variant $(mb "$SIZE_IMAGE") (its Debian 12 minbase base: $(mb "$SIZE_BASE"))"

# --- run, health, a Predict from the host, SIGTERM -------------------------------------------------
step "podman run -p 127.0.0.1::50051"
# Without systemd podman cannot schedule the HEALTHCHECK's timer and says so on stderr (kept in
# run.log); the test runs the check itself with `podman healthcheck run`.
pm run -d --name "$NAME" -p 127.0.0.1::50051 "$IMAGE" >/dev/null 2>"$WORK/run.log" \
  || { cat "$WORK/run.log" >&2; fail "podman run failed"; }
HOSTPORT="$(pm port "$NAME" 50051/tcp | head -1 | sed 's/.*://')"
[[ -n "$HOSTPORT" ]] || fail "podman did not publish port 50051"
ADDR="127.0.0.1:$HOSTPORT"
healthy=0
for _ in $(seq 120); do
  if [[ "$(pm inspect --format '{{.State.Running}}' "$NAME")" != true ]]; then
    pm logs "$NAME" >&2 || true
    fail "the container exited before becoming healthy (logs above)"
  fi
  if pm healthcheck run "$NAME" >/dev/null 2>&1; then healthy=1; break; fi
  sleep 1
done
(( healthy )) || { pm logs "$NAME" >&2; fail "the HEALTHCHECK never passed within 120 s (logs above)"; }
step "HEALTHCHECK (vlmserve-client health inside the container): healthy"
"$CLIENT" health --server "$ADDR" >/dev/null || fail "the host's health check of $ADDR failed"
step "health from the host through $ADDR: SERVING"
OUT="$("$CLIENT" predict --server "$ADDR" --prompt "Which button next?" \
        --grid "$ROOT/tests/fixtures/decoder/pool16_six_layers/image0.png" --json)" \
  || fail "Predict from the host failed"
echo "$OUT" | tail -1 | grep -q '"button"' || fail "Predict returned no action: $OUT"
step "Predict from the host: $(echo "$OUT" | tail -1 | cut -c1-120)"

S0=$(date +%s%N)
pm kill --signal TERM "$NAME" >/dev/null
timeout 30 "${PM[@]}" wait "$NAME" >/dev/null || fail "the container did not exit within 30 s of SIGTERM"
MS=$(( ($(date +%s%N) - S0) / 1000000 ))
CODE="$(pm inspect --format '{{.State.ExitCode}}' "$NAME")"
pm logs "$NAME" 2>&1 | tail -3
[[ "$CODE" == 0 ]] || fail "exit code $CODE after SIGTERM (want 0)"
(( MS <= 10000 )) || fail "took ${MS} ms to exit after SIGTERM (drain timeout 8 s + 2 s slack)"
step "SIGTERM: exit 0 after ${MS} ms"
echo "container_test.sh: PASS in $(( $(date +%s) - T0 ))s (CPU image $(mb "$SIZE_IMAGE"))"
