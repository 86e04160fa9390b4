#!/usr/bin/env bash
# serve_check.sh BIN OUT_JSON [MODEL_4B] — stage 2d of scripts/gpu/check.sh (runs THERE, from the
# repository root): the whole server with --device cuda, over gRPC, as users run it.
#   1. The built-in demo model (models/demo) served with --device cpu and with --device cuda: the
#      same action for the README's frames (examples/agent/frames) — the tiny-model e2e test
#      through the server (issue 25) — then vlmserve-bench on the cuda server at 1 and 8 clients.
#   2. With MODEL_4B (a model directory of the real 4B config; check.sh assembles it from the
#      fidelity stage's random weights and the bundled Gemma tokenizer): grid → action with
#      jump-forward at batch 1, grid → 16 text tokens at batch 1, and actions at 1, 8, 32 and 64
#      clients (issue 25's end-to-end and throughput figures; random weights change the answers,
#      not the work: the grammar keeps every answer a valid action).
# Prints summary lines ("FAIL ..." on a failure) and writes one JSON object to OUT_JSON:
#   {"demo": {"cpu_text", "cuda_text", "same_action", "bench": {...}}, "gemma3_4b": {"bench": {...}}}
# Exit 0 when everything ran and the demo actions agree, 1 otherwise. Every server and client call
# has its own time cap. VLMSERVE_SERVE_DEVICE=cpu (check.sh --dry) rehearses it without a GPU.
set -uo pipefail
trap 'exit 143' TERM  # a timeout's TERM still runs the EXIT trap (the server is killed)
BIN="$1"
OUT_JSON="$2"
MODEL_4B="${3:-}"
WORK=$(mktemp -d /tmp/vlmserve-serve.XXXXXX)
SPID=""
cleanup() {
  [[ -n "$SPID" ]] && kill -9 "$SPID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
FAILED=0
FRAMES=(examples/agent/frames/t0.png examples/agent/frames/t1.png examples/agent/frames/t2.png
        examples/agent/frames/t3.png)
PROMPT="Which button next?"

# start_server LABEL MODEL DEVICE CAP_S: starts vlmserve on a free port and waits until it is
# SERVING (sets SPID, PORT; the log is $WORK/LABEL.log).
start_server() {
  local log="$WORK/$1.log" pf="$WORK/$1.port"
  "$BIN/vlmserve" --model "$2" --device "$3" --port 0 --port-file "$pf" > "$log" 2>&1 &
  SPID=$!
  PORT=""
  local t
  for ((t = 0; t < $4 * 2; ++t)); do
    kill -0 "$SPID" 2>/dev/null || break
    if [[ -s "$pf" ]]; then
      PORT=$(tr -d '\n' < "$pf")
      timeout 10 "$BIN/vlmserve-client" health --server "127.0.0.1:$PORT" >/dev/null 2>&1 && return 0
    fi
    sleep 0.5
  done
  echo "FAIL server $1 ($3) not SERVING within $4 s: $(grep -iE 'error|fail|warn' "$log" | tail -3 | tr '\n' ' ')"
  stop_server
  return 1
}
stop_server() {
  [[ -z "$SPID" ]] && return
  kill -TERM "$SPID" 2>/dev/null
  local t
  for ((t = 0; t < 30; ++t)); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}
# predict LABEL: one Predict on the README frames; the result line (JSON) in $WORK/LABEL.json.
predict() {
  timeout 60 "$BIN/vlmserve-client" predict --server "127.0.0.1:$PORT" --frames "${FRAMES[@]}" \
    --prompt "$PROMPT" --json > "$WORK/$1.out" 2> "$WORK/$1.err"
  local rc=$?
  tail -1 "$WORK/$1.out" > "$WORK/$1.json"
  return $rc
}
# bench NAME CAP_S ARGS...: one vlmserve-bench run (after its own warm-up calls), JSON to
# $WORK/bench_NAME.json and a summary line.
bench() {
  local name="$1" cap="$2"
  shift 2
  timeout 30 "$BIN/vlmserve-bench" --server "127.0.0.1:$PORT" --frames "${FRAMES[@]}" -c 1 -n 3 \
    "$@" >/dev/null 2>&1
  if timeout "$cap" "$BIN/vlmserve-bench" --server "127.0.0.1:$PORT" --frames "${FRAMES[@]}" --json \
       "$@" > "$WORK/bench_$name.json" 2> "$WORK/bench_$name.err"; then
    python3 - "$WORK/bench_$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["status_codes"].get("0", 0)
print(f"  {sys.argv[2]:24s} {r['ok_rps']:8.1f} ok/s  latency p50 {r['latency_ms']['p50']:7.1f} "
      f"p99 {r['latency_ms']['p99']:7.1f} ms  first token p50 {r['time_to_first_token_ms']['p50']:7.1f} ms  "
      f"{ok}/{r['requests']} ok  {r['tokens_per_request']['completion']:.0f} tokens/request")
PY
  else
    echo "FAIL bench $name: $(tail -2 "$WORK/bench_$name.err" | tr '\n' ' ')"
    echo '{"error": "did not finish"}' > "$WORK/bench_$name.json"
    FAILED=1
  fi
}

# ---- 1. the demo model: cpu and cuda give the same action; cuda's throughput ----
GPU_DEV="${VLMSERVE_SERVE_DEVICE:-cuda}"
for dev in cpu cuda; do
  if start_server "demo_$dev" models/demo "$([[ $dev == cuda ]] && echo "$GPU_DEV" || echo cpu)" 60; then
    predict "demo_$dev" || { echo "FAIL demo --device $dev: $(tail -2 "$WORK/demo_$dev.err" | tr '\n' ' ')"; FAILED=1; }
    if [[ $dev == cuda ]]; then
      echo "demo model, --device $GPU_DEV, vlmserve-bench (actions, README frames):"
      bench demo_c1 30 -c 1 -n 50
      bench demo_c8 30 -c 8 -n 200
    fi
    stop_server
  else
    FAILED=1
  fi
done
python3 - "$WORK" <<'PY' || FAILED=1
import json, os, sys
w = sys.argv[1]
def text(dev):
    try:
        return json.load(open(os.path.join(w, f"demo_{dev}.json"))).get("text")
    except Exception:
        return None
cpu, cuda = text("cpu"), text("cuda")
same = cpu is not None and cpu == cuda
gpu = os.environ.get("VLMSERVE_SERVE_DEVICE", "cuda")
print(f"demo model through the server: cpu {cpu!r}, {gpu} {cuda!r}: {'same action' if same else 'FAIL: they differ'}")
sys.exit(0 if same else 1)
PY

# ---- 2. the 4B (random weights of the real config) ----
if [[ -n "$MODEL_4B" ]]; then
  if start_server gemma3_4b "$MODEL_4B" "$GPU_DEV" 180; then
    grep -E 'memory: weights|loaded in|loading weights' "$WORK/gemma3_4b.log" | sed 's/^/  log | /' | tail -4
    echo "gemma-3-4b (random weights), --device $GPU_DEV, vlmserve-bench (README frames):"
    bench 4b_action_c1 60 -c 1 -n 20
    bench 4b_text16_c1 60 -c 1 -n 10 --output-mode text --max-new-tokens 16
    bench 4b_action_c8 60 -c 8 -n 80
    bench 4b_action_c32 90 -c 32 -n 192
    bench 4b_action_c64 90 -c 64 -n 384
    stop_server
  else
    FAILED=1
  fi
fi

python3 - "$WORK" "$OUT_JSON" <<'PY'
import glob, json, os, sys
w, out = sys.argv[1], sys.argv[2]
def load(p):
    try:
        return json.load(open(p))
    except Exception as e:
        return {"error": str(e)}
r = {"demo": {}, "gemma3_4b": {}}
for dev in ("cpu", "cuda"):
    r["demo"][f"{dev}_text"] = load(os.path.join(w, f"demo_{dev}.json")).get("text")
r["demo"]["same_action"] = r["demo"]["cpu_text"] is not None and r["demo"]["cpu_text"] == r["demo"]["cuda_text"]
for p in sorted(glob.glob(os.path.join(w, "bench_*.json"))):
    name = os.path.basename(p)[len("bench_"):-len(".json")]
    (r["gemma3_4b"] if name.startswith("4b_") else r["demo"]).setdefault("bench", {})[name] = load(p)
json.dump(r, open(out, "w"), indent=1)
PY
exit $FAILED
