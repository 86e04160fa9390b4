#!/usr/bin/env bash
# install_test.sh BUILD_DIR — `cmake --install` into a fresh staging prefix, then start the installed
# server with no flags but a free port: it must find its built-in model relative to its own
# location (P/share/vlmserve/models/builtin), become SERVING, answer a Predict through the installed
# client, and exit 0 on SIGTERM. Run by ctest (install_layout).
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAGE="$(mktemp -d)"
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$STAGE"' EXIT
cmake --install "$BUILD" --prefix "$STAGE/usr" >/dev/null
for b in vlmserve vlmserve-client vlmserve-bench vlmserve-generate vlmserve-inspect \
         vlmserve-tokenize vlmserve-preprocess; do
  [[ -x "$STAGE/usr/bin/$b" ]] || { echo "install_test: $b was not installed" >&2; exit 1; }
done
[[ -f "$STAGE/usr/share/vlmserve/models/builtin/config.json" ]] \
  || { echo "install_test: the built-in model was not installed" >&2; exit 1; }
cd "$STAGE"
"$STAGE/usr/bin/vlmserve" --port 0 --port-file "$STAGE/port" >"$STAGE/log" 2>&1 &
PID=$!
for _ in $(seq 300); do
  if [[ -s "$STAGE/port" ]] && "$STAGE/usr/bin/vlmserve-client" health \
       --server "127.0.0.1:$(cat "$STAGE/port")" >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done
ADDR="127.0.0.1:$(cat "$STAGE/port")"
"$STAGE/usr/bin/vlmserve-client" health --server "$ADDR"
grep -q "loading model from $STAGE/usr/share/vlmserve/models/builtin " "$STAGE/log" \
  || { echo "install_test: the server did not load the installed built-in model:" >&2; cat "$STAGE/log" >&2; exit 1; }
"$STAGE/usr/bin/vlmserve-client" predict --server "$ADDR" --prompt "Which button next?" \
  --grid "$ROOT/tests/fixtures/decoder/pool16_six_layers/image0.png" --json | tail -1 \
  | grep -q '"button"' || { echo "install_test: no action from the installed server" >&2; exit 1; }
kill -TERM "$PID"
wait "$PID"
echo "install_test: PASS (installed to a staging prefix, served the built-in model, exit 0)"
