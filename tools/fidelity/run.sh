#!/usr/bin/env bash
# run.sh — the runner fidelity check end to end (issue 25): a seeded random model of CONFIG made and
# run by transformers in bf16 (reference.py), the same prompt through one of our runners
# (vlmserve-dump), compared (compare.py). scripts/gpu/check.sh runs it on the GPU machine with the
# real 4B config and --device cuda; here it runs with a tiny config on the CPU reference:
#
#   tools/fidelity/run.sh --config tests/fixtures/decoder/pool16_six_layers/config.json \
#       --device cpu --dump build/bin/vlmserve-dump [--python ~/venvs/vlmserve/bin/python]
#
#   --config FILE   a Gemma 3 config.json (default bench/configs/gemma-3-4b-it.json)
#   --device D      cpu or cuda (default cuda)
#   --dump BIN      vlmserve-dump (default build/bin/vlmserve-dump)
#   --python PY     a Python with torch, transformers and safetensors (default python3)
#   --json FILE     compare.py's figures as JSON
#   --work DIR      where the model and logits go (default a temp dir, removed at the end; the 4B
#                   model is 8.6 GB and the logit files 346 MB each)
# Exit: 0 when every criterion holds, 1 when one fails, 2 when a step could not run.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONFIG="$ROOT/bench/configs/gemma-3-4b-it.json"
DEVICE=cuda
DUMP="$ROOT/build/bin/vlmserve-dump"
PY=python3
JSON=""
WORK=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) CONFIG="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --dump) DUMP="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
KEEP=1
if [[ -z "$WORK" ]]; then
  WORK=$(mktemp -d /tmp/vlmserve-fidelity.XXXXXX)
  KEEP=0
fi
trap '[[ $KEEP == 1 ]] || rm -rf "$WORK"' EXIT
T0=$(date +%s)
step() { echo "[fidelity $(( $(date +%s) - T0 ))s] $*"; }

step "reference: transformers bf16 and fp32 on a random model of $(basename "$CONFIG")"
"$PY" "$ROOT/tools/fidelity/reference.py" --config "$CONFIG" --model-out "$WORK/model" \
  --out "$WORK/ref" || { echo "run.sh: reference.py failed" >&2; exit 2; }
step "ours: vlmserve-dump --device $DEVICE"
"$DUMP" --model "$WORK/model" --inputs "$WORK/ref" --device "$DEVICE" --new-tokens 16 \
  --out "$WORK/ours" || { echo "run.sh: vlmserve-dump failed" >&2; exit 2; }
step "compare"
"$PY" "$ROOT/tools/fidelity/compare.py" --reference "$WORK/ref" --ours "$WORK/ours" \
  ${JSON:+--json "$JSON"}
