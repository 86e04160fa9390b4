#!/usr/bin/env bash
# serve.sh — install what is missing, build, and start the server on its built-in model (on the GPU
# when there is one). Arguments are passed to build/bin/vlmserve (see `vlmserve --help`).
#
# The gRPC server itself does not exist yet (it is the next bricks: the API/server issue and the
# CPU decoder issue). Until it does, this script builds everything and says so, exiting non-zero.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh" --build-dir "$ROOT/build" --type RelWithDebInfo
if [[ -x "$ROOT/build/bin/vlmserve" ]]; then
  exec "$ROOT/build/bin/vlmserve" "$@"
fi
cat >&2 <<'MSG'
serve.sh: the vlmserve server is not implemented yet, so there is nothing to start.
What exists today (in build/bin/): vlmserve-inspect (describe a model from its config.json).
MSG
exit 1
