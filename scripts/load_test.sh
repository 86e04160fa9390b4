#!/usr/bin/env bash
# load_test.sh [--server HOST:PORT] [--open] [ghz or vlmserve-bench arguments...]
# Load against a running server: ghz with deploy/ghz's configs when ghz is on PATH (closed loop,
# or --open for the open-loop config), else build/bin/vlmserve-bench with the same request (the
# same grid and prompt). Prints the tool's summary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER=127.0.0.1:50051
OPEN=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --server) SERVER="$2"; shift 2 ;;
    --open) OPEN=1; shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
CONFIG="$ROOT/deploy/ghz/predict-closed.json"
[[ $OPEN -eq 1 ]] && CONFIG="$ROOT/deploy/ghz/predict-open.json"
if command -v ghz >/dev/null; then
  echo "load_test.sh: ghz $(ghz --version 2>/dev/null) with $CONFIG against $SERVER"
  exec ghz --config "$CONFIG" "$@" "$SERVER"
fi
BENCH="$ROOT/build/bin/vlmserve-bench"
[[ -x "$BENCH" ]] || { echo "load_test.sh: neither ghz on PATH nor $BENCH (run scripts/bootstrap.sh)" >&2; exit 1; }
echo "load_test.sh: ghz is not on PATH; vlmserve-bench with the same request against $SERVER"
GRID="$ROOT/tests/fixtures/decoder/pool16_six_layers/image0.png"
if [[ $OPEN -eq 1 ]]; then
  exec "$BENCH" --server "$SERVER" --grid "$GRID" --prompt "Which button next?" \
    --max-new-tokens 48 --rps 20 --duration 30 --connections 4 "$@"
fi
exec "$BENCH" --server "$SERVER" --grid "$GRID" --prompt "Which button next?" \
  --max-new-tokens 48 -c 8 -n 400 "$@"
