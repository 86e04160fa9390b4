#!/usr/bin/env bash
# demo.sh — the built-in demo model plays the demo game (examples/agent/) over gRPC.
#
#   scripts/demo.sh [--server HOST:PORT] [--episodes N] [--seed S] [--json]
#
# Without --server it starts build/bin/vlmserve (the built-in model, a free port) itself and stops
# it at the end; build first (scripts/bootstrap.sh or scripts/serve.sh) — or set VLMSERVE_BIN. Each
# episode plays game seed S + i: frames in, action out, the game steps. It prints per episode the
# steps, the outcome and the latency, then a summary; with --json the last line is one JSON object
# (success_rate, random_success_rate, button_accuracy, latency_ms {p50, p90, p99}, …).
# Needs Debian's python3, python3-grpcio, python3-pil, protobuf-compiler, protobuf-compiler-grpc
# (scripts/bootstrap.sh installs them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER="" EPISODES=10 SEED=1 JSON=()
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --server) SERVER="$2"; shift 2 ;;
    --episodes) EPISODES="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --json) JSON=(--json); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

PID=""
cleanup() {
  if [[ -n $PID ]]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  [[ -n ${TMP:-} ]] && rm -rf "$TMP"
}
trap cleanup EXIT

if [[ -z $SERVER ]]; then
  BIN="${VLMSERVE_BIN:-$ROOT/build/bin/vlmserve}"
  if [[ ! -x $BIN ]]; then
    echo "demo.sh: $BIN is not built: run scripts/bootstrap.sh first, or give --server HOST:PORT" >&2
    exit 1
  fi
  TMP="$(mktemp -d)"
  "$BIN" --port 0 --port-file "$TMP/port" >"$TMP/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    [[ -s $TMP/port ]] && break
    if ! kill -0 "$PID" 2>/dev/null; then
      echo "demo.sh: the server exited at start:" >&2; cat "$TMP/server.log" >&2; exit 1
    fi
    sleep 0.1
  done
  [[ -s $TMP/port ]] || { echo "demo.sh: the server did not start in 60 s" >&2; exit 1; }
  SERVER="127.0.0.1:$(cat "$TMP/port")"
  # The port is bound before the model is loaded: wait for health SERVING (the agent also retries
  # UNAVAILABLE, as any client should).
  CLIENT="$(dirname "$BIN")/vlmserve-client"
  if [[ -x $CLIENT ]]; then
    for _ in $(seq 1 600); do
      "$CLIENT" health --server "$SERVER" >/dev/null 2>&1 && break
      kill -0 "$PID" 2>/dev/null || { echo "demo.sh: the server exited:" >&2; cat "$TMP/server.log" >&2; exit 1; }
      sleep 0.1
    done
  fi
  echo "demo.sh: started $BIN on $SERVER (log: server.log, removed at exit)" >&2
fi

"$PY" "$ROOT/examples/agent/agent.py" --server "$SERVER" --episodes "$EPISODES" --seed "$SEED" \
  --proto-dir "$ROOT/proto" "${JSON[@]}"
