#!/usr/bin/env bash
# serve.sh — install what is missing, build, and start the server on its built-in model (the demo
# model, trained on the game of examples/agent/; scripts/demo.sh plays it).
# Arguments are passed to build/bin/vlmserve (see `build/bin/vlmserve --help`), e.g.
#   scripts/serve.sh --port 50051 --model /models/gemma-3-4b-it
#
# The server listens on 127.0.0.1:50051 by default (--listen 0.0.0.0 for remote clients). It runs on
# the CPU reference runner for now: the CUDA runner is not written yet, so a GPU is not used even
# when there is one (--device auto picks the CPU; --device cuda says so and exits).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh" --build-dir "$ROOT/build" --type RelWithDebInfo
exec "$ROOT/build/bin/vlmserve" "$@"
