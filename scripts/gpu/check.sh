#!/usr/bin/env bash
# check.sh (runs THERE, on the GPU machine, from the repository root) — the prepared GPU check:
#   1. machine facts (GPU, driver, glibc, where libcudart/libcublasLt are, PyTorch)
#   2. the GPU tests from .gpu-bundle (or, plan B, a native minimal build if those don't start)
#   3. the kernel benchmarks next to PyTorch's on the same shapes
#   4. the transformers end-to-end baseline (bench/torch_e2e_baseline.py: vision, prefill, generate, SDPA d=72)
#   2c. the 4B fidelity check (issue 25): random weights of the real gemma-3-4b-it config made and
#      run by transformers bf16 (tools/fidelity/reference.py), the same prompt through the CUDA
#      runner (vlmserve-dump --device cuda), compared by tools/fidelity/compare.py
#   2d. the server end to end (scripts/gpu/serve_check.sh): the demo model on --device cpu and cuda
#      (same action for the README frames), and the random 4B served with the Gemma tokenizer —
#      grid → action and → 16 tokens at batch 1, actions at 1/8/32/64 clients (vlmserve-bench)
#   5. compute-sanitizer: memcheck on the GPU tests and on the CUDA runner's tiny-model tests,
#      racecheck on the attention tests at small shapes (VLMSERVE_GPU_SMALL=1) — "unavailable"
#      where it cannot run, not a failure
# and writes logs + JSON to $OUT (at most 8 files come back):
#   machine.txt summary.txt gpu_tests.log (+ CPU reference, CUDA runner and fidelity logs)
#   fidelity.json sanitizer.log bench_ours.json (GEMM + memory-bound kernels) bench_torch.json (the
#   same in PyTorch) bench_torch_e2e.json
#
#   scripts/gpu/check.sh          on the GPU machine (device tool: carry [".gpu-bundle"])
#   scripts/gpu/check.sh --dry    rehearsal here: same steps, tests skip, tools report unavailable
#   VLMSERVE_CHECK_E2E=0          skip the transformers end-to-end baseline (≈20 s)
#   VLMSERVE_CHECK_FIDELITY=0     skip the 4B fidelity check (≈2–3 min: a 8.6 GB model is written)
#   VLMSERVE_PYTHON=PY            the Python for the fidelity check (default python3; a dry run here
#                                 needs the tools venv: ~/venvs/vlmserve/bin/python)
#
# Prepare the bundle first, here: scripts/gpu/bundle.sh
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
DRY=0
[[ "${1:-}" == "--dry" ]] && DRY=1
OUT="${OUT:-}"
if [[ -z "$OUT" ]]; then OUT=/tmp/vlmserve-gpu-check; fi
mkdir -p "$OUT"
BUNDLE="$ROOT/.gpu-bundle"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
T0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }
# One time budget for the whole run: the device tool stops a command at its limit (600 s at most,
# less when less device time is left), and a stage killed there may lose what it had not written.
# Each stage's time limit is its own cap or what is left of the budget, whichever is less; a stage
# that would get under 10 s is skipped with a line saying so. The stages run most valuable first.
BUDGET=${VLMSERVE_CHECK_BUDGET:-560}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
cap() { local l; l=$(left); echo $(( l < $1 ? (l > 1 ? l : 1) : $1 )); }
has_time() {  # label
  (( $(left) >= 10 )) && return 0
  say "$1: skipped — the ${BUDGET} s budget is spent ($(elapsed))"
  return 1
}

say "vlmserve GPU check $( ((DRY)) && echo '(DRY RUN on a machine without GPU)') — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# The bundle travels packed (scripts/gpu/bundle.sh): unpack it in place, with tar's xz or Python's.
if [[ -f "$BUNDLE/bundle.tar.xz" ]]; then
  if tar -C "$BUNDLE" -xJf "$BUNDLE/bundle.tar.xz" 2>/dev/null ||
     python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
       "$BUNDLE/bundle.tar.xz" "$BUNDLE"; then
    rm -f "$BUNDLE/bundle.tar.xz"
    say "bundle unpacked ($(elapsed))"
  else
    say "FAIL: cannot unpack $BUNDLE/bundle.tar.xz (neither tar -J nor Python's tarfile)"
    exit 1
  fi
fi
if [[ ! -x "$BUNDLE/bin/vlmserve_gpu_tests" ]]; then
  say "FAIL: $BUNDLE/bin/vlmserve_gpu_tests missing — run scripts/gpu/bundle.sh here and carry .gpu-bundle"
  exit 1
fi
say "bundle: $(head -1 "$BUNDLE/MANIFEST")"

# ---- 1. machine -------------------------------------------------------------------------------
{
  echo "== uname"; uname -a
  echo "== os"; grep PRETTY_NAME /etc/os-release
  echo "== glibc"; ldd --version | head -1
  echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi unavailable"
  echo "== nvidia-smi query"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit \
    --format=csv 2>&1 || true
  echo "== nvcc"; (nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>&1 | tail -2
  echo "== compute-sanitizer"; command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>&1
  echo "== ldconfig cuda"; ldconfig -p | grep -E 'cublas|cudart' || echo "(none in ldconfig)"
  echo "== /usr/local/cuda*/lib64"; ls -d /usr/local/cuda* 2>&1; ls /usr/local/cuda*/lib64 2>/dev/null | grep -E 'cublas|cudart' | sort -u
  echo "== python/torch"
  python3 -c 'import torch, sys; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1 | tail -1
  echo "== bundle MANIFEST"; cat "$BUNDLE/MANIFEST"
} > "$OUT/machine.txt" 2>&1
say "machine: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo 'no nvidia-smi'); $(ldd --version | head -1)"

# ---- 2. libraries and the binaries to run -----------------------------------------------------
find_cublaslt_dir() {
  ldconfig -p | grep -q 'libcublasLt.so.13 ' && { echo ""; return; }
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib \
           $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, s, "lib") for p in nvidia.__path__ for s in ("cu13", "cublas")))' 2>/dev/null); do
    [[ -e "$d/libcublasLt.so.13" ]] && { echo "$d"; return; }
  done
  echo "NOTFOUND"
}
CUBLAS_DIR=$(find_cublaslt_dir)
export LD_LIBRARY_PATH="$BUNDLE/lib${CUBLAS_DIR:+:$CUBLAS_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "libcublasLt.so.13: ${CUBLAS_DIR:-found by ldconfig}"
if ldd "$BUNDLE/bin/vlmserve_gpu_tests" | grep -qE 'lib(stdc\+\+|gcc_s).*not found'; then
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$BUNDLE/lib-fallback"
  say "using the bundled libstdc++/libgcc_s (the machine has none)"
fi
BIN="$BUNDLE/bin"
if ! "$BIN/vlmserve_gpu_tests" --gtest_list_tests > "$OUT/startup.tmp" 2>&1; then
  say "bundled binaries do not start here: $(tail -2 "$OUT/startup.tmp" | tr '\n' ' ')"
  say "plan B: native minimal build (VLMSERVE_MINIMAL=ON) with this machine's cmake/nvcc"
  export PATH="/usr/local/cuda/bin:$PATH"
  if cmake -S . -B build-native -G Ninja -DCMAKE_BUILD_TYPE=Release -DVLMSERVE_MINIMAL=ON \
       -DVLMSERVE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native -DVLMSERVE_LINEINFO=ON \
       -DVLMSERVE_GTEST_SOURCE_DIR="$BUNDLE/googletest" -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON \
       > "$OUT/startup.tmp" 2>&1 &&
     cmake --build build-native -j "$(nproc)" >> "$OUT/startup.tmp" 2>&1; then
    BIN="$ROOT/build-native/bin"
    say "plan B build ok ($(elapsed))"
  else
    say "FAIL: plan B build failed: $(tail -5 "$OUT/startup.tmp" | tr '\n' ' ')"
    cp "$OUT/startup.tmp" "$OUT/gpu_tests.log"
  fi
fi
rm -f "$OUT/startup.tmp"

# ---- 2b. tests -----------------------------------------------------------------------------------
FAILED=0
run_tests() {  # name binary log json [gtest args...]
  has_time "$1" || { : > "$3"; return; }
  timeout "$(cap 300)" "$2" --gtest_output="json:$4" "${@:5}" > "$3" 2>&1
  local rc=$?
  local line
  line=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ tests?' "$3" | tr '\n' ' ')
  if [[ $rc -eq 0 ]]; then say "$1: ok — $line"; else say "FAIL $1 (exit $rc): $line"; FAILED=1; fi
}
# The tensor-core and planned attention kernels (never run on a GPU before their first check) run
# in processes of their own: a kernel fault poisons the CUDA context of every later test in its
# process.
run_tests "GPU tests" "$BIN/vlmserve_gpu_tests" "$OUT/gpu_tests.log" "$OUT/gpu_tests.json" \
  --gtest_filter='-CudaAttentionTest.DenseFastPath*:CudaAttentionTest.Planned*'
run_tests "attention fast path (d=72)" "$BIN/vlmserve_gpu_tests" "$OUT/fast_tests.log" \
  "$OUT/gpu_tests.json" --gtest_filter='CudaAttentionTest.DenseFastPath*'
{ echo; echo "==== attention fast path (d=72) ===="; cat "$OUT/fast_tests.log"; } >> "$OUT/gpu_tests.log"
run_tests "planned paged attention (flash-decoding, d=256 prefill)" "$BIN/vlmserve_gpu_tests" \
  "$OUT/fast_tests.log" "$OUT/gpu_tests.json" --gtest_filter='CudaAttentionTest.Planned*'
{ echo; echo "==== planned paged attention ===="; cat "$OUT/fast_tests.log"; } >> "$OUT/gpu_tests.log"
rm -f "$OUT/gpu_tests.json" "$OUT/fast_tests.log"  # the 8 files that come back are counted
run_tests "CPU reference tests" "$BIN/vlmserve_kernel_ref_tests" "$OUT/ref_tests.log" "$OUT/ref_tests.json"
# The CUDA runner against the CPU runner on the tiny fixtures (found through VLMSERVE_SOURCE_DIR:
# the binary was built on another machine). Older bundles do not have it.
if [[ -x "$BIN/vlmserve_gpu_runner_tests" ]]; then
  export VLMSERVE_SOURCE_DIR="$ROOT"
  run_tests "CUDA runner tests" "$BIN/vlmserve_gpu_runner_tests" \
    "$OUT/runner_tests.log" "$OUT/runner_tests.json"
  rm -f "$OUT/runner_tests.json"
  { echo; echo "==== CUDA runner tests (vlmserve_gpu_runner_tests) ===="; cat "$OUT/runner_tests.log"; } >> "$OUT/gpu_tests.log"
  rm -f "$OUT/runner_tests.log"
fi
rm -f "$OUT/ref_tests.json"  # keep the file count within what comes back (8 files)
{ echo; echo "==== CPU reference tests (vlmserve_kernel_ref_tests) ===="; cat "$OUT/ref_tests.log"; } >> "$OUT/gpu_tests.log"
rm -f "$OUT/ref_tests.log"
# (summed over the suites appended to the log)
skipped=$(grep -oP '\[  SKIPPED \] \K[0-9]+(?= tests?, listed below)' "$OUT/gpu_tests.log" | awk '{s += $1} END {print s + 0}')
if ((DRY)); then
  say "GPU tests skipped: ${skipped:-0} (expected in a dry run: no GPU here)"
elif [[ "${skipped:-0}" != 0 ]]; then
  say "FAIL: ${skipped} GPU test(s) skipped on a GPU machine"; FAILED=1
fi

# ---- 2c. 4B fidelity: the CUDA runner against transformers bf16 ---------------------------------
# tools/fidelity/run.sh: the model (8.6 GB) and the logit files (346 MB each) stay in a temp dir on
# the machine's disk, never under $OUT. A dry run rehearses the same pipeline on a tiny config
# with the CPU runner (VLMSERVE_PYTHON: a Python with torch and transformers, if python3 lacks them).
PY="${VLMSERVE_PYTHON:-python3}"
# The fidelity work dir is kept for the server stage (its 4B model), then removed.
FWORK=$(mktemp -d /tmp/vlmserve-fidelity.XXXXXX)
trap 'rm -rf "$FWORK"' EXIT
fidelity() {  # config device
  { echo; echo "==== fidelity: $(basename "$1"), --device $2 (tools/fidelity/run.sh) ===="; } >> "$OUT/gpu_tests.log"
  timeout "$(cap 540)" tools/fidelity/run.sh --config "$1" --device "$2" --dump "$BIN/vlmserve-dump" \
    --python "$PY" --json "$OUT/fidelity.json" --work "$FWORK" > "$OUT/fidelity.tmp" 2>&1
  local rc=$?
  cat "$OUT/fidelity.tmp" >> "$OUT/gpu_tests.log"
  grep -E '^(vision|logits|top-1|greedy|fidelity):' "$OUT/fidelity.tmp" | sed 's/^/fidelity | /' | tee -a "$SUMMARY"
  case $rc in
    0) ;;
    1) say "FAIL fidelity (figures above; fidelity.json)"; FAILED=1 ;;
    *) say "FAIL fidelity: a step did not run (exit $rc): $(grep -v '^\[' "$OUT/fidelity.tmp" | tail -3 | tr '\n' ' ')"; FAILED=1 ;;
  esac
  rm -f "$OUT/fidelity.tmp"
}
if [[ "${VLMSERVE_CHECK_FIDELITY:-1}" != 1 ]]; then
  say "fidelity: skipped (VLMSERVE_CHECK_FIDELITY=0)"
elif [[ ! -x "$BIN/vlmserve-dump" ]]; then
  say "fidelity: skipped (no vlmserve-dump in $BIN: an older bundle, or plan B's minimal build)"
elif ! "$PY" -c 'import torch, transformers, safetensors' 2>/dev/null; then
  say "$( ((DRY)) || echo 'FAIL ')fidelity: $PY has no torch/transformers/safetensors"; ((DRY)) || FAILED=1
elif ((DRY)); then
  fidelity tests/fixtures/decoder/pool16_six_layers/config.json cpu
else
  fidelity bench/configs/gemma-3-4b-it.json cuda
fi
say "fidelity done ($(elapsed))"

# ---- 2d. the server end to end (scripts/gpu/serve_check.sh) -------------------------------------
# The demo model with --device cpu and cuda (same action), and the fidelity stage's random 4B made
# a servable model directory with the bundled Gemma tokenizer: grid → action / 16 tokens at batch
# 1, actions at 1-64 clients. Figures go into bench_ours.json ("server").
M4B=""
if ((DRY)); then
  export VLMSERVE_SERVE_DEVICE=cpu  # rehearsal: the CPU runner where the GPU one would run
elif [[ -f "$FWORK/model/config.json" && -f "$BUNDLE/gemma3/tokenizer.json.xz" ]]; then
  if python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
       "$BUNDLE/gemma3/tokenizer.json.xz" "$FWORK/model/tokenizer.json"; then
    cp "$BUNDLE/gemma3/generation_config.json" "$FWORK/model/" 2>/dev/null
    M4B="$FWORK/model"
  fi
fi
[[ -z "$M4B" ]] && say "server stage: no 4B model (fidelity skipped or failed, or no tokenizer in the bundle): demo model only"
if [[ -x "$BIN/vlmserve" && -x "$BIN/vlmserve-bench" && -x "$BIN/vlmserve-client" ]]; then
  timeout "$(cap 420)" scripts/gpu/serve_check.sh "$BIN" "$OUT/serve.tmp" $M4B 2>&1 | tee -a "$SUMMARY"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { say "FAIL server stage (lines above)"; FAILED=1; }
else
  say "server stage: skipped (no vlmserve/vlmserve-bench/vlmserve-client in $BIN: an older bundle or plan B)"
fi
rm -rf "$FWORK/model" "$FWORK/ref" "$FWORK/ours"  # 8.6 GB of weights and the logit files
say "server stage done ($(elapsed))"

# ---- 3. benchmarks next to PyTorch ------------------------------------------------------------
# Ours: bench_gemm + bench_kernels → bench_ours.json; PyTorch's on the same shapes → bench_torch.json
# (merged so that everything fits in the 8 files that come back).
timeout "$(cap 300)" "$BIN/vlmserve_bench_gemm" > "$OUT/gemm.tmp" 2> "$OUT/bench.err" ||
  { say "FAIL gemm benchmark: $(tail -2 "$OUT/bench.err" | tr '\n' ' ')"; FAILED=1; }
timeout "$(cap 300)" "$BIN/vlmserve_bench_kernels" > "$OUT/kernels.tmp" 2>> "$OUT/bench.err" ||
  { say "FAIL kernel benchmark: $(tail -2 "$OUT/bench.err" | tr '\n' ' ')"; FAILED=1; }
if python3 -c 'import torch' 2>/dev/null; then
  timeout "$(cap 300)" python3 bench/torch_gemm_baseline.py > "$OUT/torch_gemm.tmp" 2>> "$OUT/bench.err" ||
    say "torch gemm baseline failed: $(tail -2 "$OUT/bench.err" | tr '\n' ' ')"
  timeout "$(cap 300)" python3 bench/torch_kernels_baseline.py > "$OUT/torch_kernels.tmp" 2>> "$OUT/bench.err" ||
    say "torch kernel baseline failed: $(tail -2 "$OUT/bench.err" | tr '\n' ' ')"
else
  echo '{"skipped": "no PyTorch on this machine"}' > "$OUT/torch_gemm.tmp"
  cp "$OUT/torch_gemm.tmp" "$OUT/torch_kernels.tmp"
fi
[[ -s "$OUT/bench.err" ]] && { echo "== benchmark stderr"; tail -30 "$OUT/bench.err"; } >> "$OUT/machine.txt"
rm -f "$OUT/bench.err"
python3 - "$OUT" <<'PY' | tee -a "$SUMMARY"
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except Exception as e:
        return {"skipped": f"unreadable: {e}"}
gemm, kernels, tgemm, tkernels = (load(n) for n in ("gemm.tmp", "kernels.tmp", "torch_gemm.tmp", "torch_kernels.tmp"))
server = load("serve.tmp") if os.path.exists(os.path.join(out, "serve.tmp")) else {"skipped": "no server stage"}
json.dump({"gemm": gemm, "kernels": kernels, "server": server},
          open(os.path.join(out, "bench_ours.json"), "w"), indent=1)
if os.path.exists(os.path.join(out, "serve.tmp")):
    os.remove(os.path.join(out, "serve.tmp"))
json.dump({"gemm": tgemm, "kernels": tkernels}, open(os.path.join(out, "bench_torch.json"), "w"), indent=1)
for n in ("gemm.tmp", "kernels.tmp", "torch_gemm.tmp", "torch_kernels.tmp"):
    os.remove(os.path.join(out, n))
if "results" not in gemm:
    print("gemm benchmark:", gemm.get("skipped", "no results"))
else:
    base = {r["name"]: r for r in tgemm.get("results", [])}
    print(f"gemm (bf16, cuBLASLt) on {gemm.get('device','?')}; torch.matmul: {tgemm.get('skipped', tgemm.get('torch',''))}")
    print(f"{'shape':18s} {'m':>5s} {'n':>6s} {'k':>6s} {'ours us':>9s} {'TFLOP/s':>8s} {'torch us':>9s} {'TFLOP/s':>8s} {'speedup':>7s}")
    for r in gemm["results"]:
        b = base.get(r["name"])
        tb = f"{b['median_us']:9.1f} {b['tflops']:8.1f} {b['median_us']/r['median_us']:7.2f}" if b else f"{'-':>9s} {'-':>8s} {'-':>7s}"
        print(f"{r['name']:18s} {r['m']:5d} {r['n']:6d} {r['k']:6d} {r['median_us']:9.1f} {r['tflops']:8.1f} {tb}")
if "results" not in kernels:
    print("kernel benchmark:", kernels.get("skipped", "no results"))
else:
    base = {r["name"]: r for r in tkernels.get("results", [])}
    print(f"memory-bound kernels: device-to-device copy {kernels['copy_gbps']} GB/s "
          f"(torch copy_ {tkernels.get('copy_gbps', '-')} GB/s)")
    print(f"{'op':20s} {'shape':18s} {'ours us':>9s} {'GB/s':>7s} {'%copy':>6s} {'torch us':>9s} {'GB/s':>7s} {'speedup':>7s}")
    for r in kernels["results"]:
        b = base.get(r["name"])
        tb = f"{b['median_us']:9.1f} {b['gbps']:7.1f} {b['median_us']/r['median_us']:7.2f}" if b else f"{'-':>9s} {'-':>7s} {'-':>7s}"
        print(f"{r['name']:20s} {r['shape']:18s} {r['median_us']:9.1f} {r['gbps']:7.1f} "
              f"{100 * r['gbps'] / kernels['copy_gbps']:5.0f}% {tb}")
    # The decoder's paged attention (issue 24): ours (planned; _generic = the warp-per-query
    # kernel) next to the fastest torch SDPA backend on dense K/V of the same shape.
    best = {}
    for b in tkernels.get("paged_attention", []):
        if "median_us" in b and (b["name"] not in best or b["median_us"] < best[b["name"]]["median_us"]):
            best[b["name"]] = b
    if kernels.get("paged_attention"):
        print("paged attention (8/4 heads, d=256; decode: GB/s of KV read, % of copy; prefill: TFLOP/s):")
    for r in kernels.get("paged_attention", []):
        b = best.get(r["name"].replace("_generic", ""))
        rate = (f"{r['gbps']:7.1f} GB/s {r['pct_copy']:5.1f}%" if "gbps" in r else f"{r['tflops']:7.1f} TFLOP/s      ")
        tb = (f"torch {b['backend']:19s} {b['median_us']:9.1f} us  ours {b['median_us'] / r['median_us']:5.2f}x"
              if b else "torch -")
        print(f"  {r['name']:28s} {r['median_us']:9.1f} us {rate}  {tb}")
PY

# ---- 4. transformers end-to-end baseline (random weights of the real 4B config, bf16) -----------
if [[ "${VLMSERVE_CHECK_E2E:-1}" != 1 ]]; then
  echo '{"bench": "torch_e2e", "skipped": "VLMSERVE_CHECK_E2E=0"}' > "$OUT/bench_torch_e2e.json"
  say "transformers baseline: skipped (VLMSERVE_CHECK_E2E=0)"
elif python3 -c 'import torch, transformers' 2>/dev/null; then
  timeout "$(cap 240)" python3 bench/torch_e2e_baseline.py > "$OUT/bench_torch_e2e.json" 2> "$OUT/e2e.err" ||
    say "transformers baseline failed: $(tail -3 "$OUT/e2e.err" | tr '\n' ' ')"
  python3 - "$OUT/bench_torch_e2e.json" "$OUT/bench_ours.json" <<'PY' 2>/dev/null | tee -a "$SUMMARY"
import json, sys
r = json.load(open(sys.argv[1]))
try:
    ours_attn = json.load(open(sys.argv[2]))["kernels"].get("attention", [])
except Exception:
    ours_attn = []
if "skipped" in r:
    print("transformers baseline:", r["skipped"]); sys.exit()
gen = [k for k in r if k.startswith("generate_") and k != "generate_1_ms"][0]
print(f"transformers {r['transformers']} on {r['device']}: vision {r['vision_ms']['median_ms']} ms, prefill "
      f"({r['prompt_tokens']} tokens + image) {r['prefill_ms']['median_ms']} ms, {gen} {r[gen]['median_ms']} ms, "
      f"decode {r['decode_ms_per_token']} ms/token")
# Vision attention (16 heads x 4096 x 72 per image): ours (both paths) next to torch's SDPA backends.
for images, key in ((1, "sdpa_vision_attention"), (4, "sdpa_vision_attention_4")):
    print(f"vision attention, {images} image(s) x 16 heads x 4096 x 72:")
    for a in ours_attn:
        if a["name"].endswith(f"_{images}"):
            print(f"  ours {a['name']:28s} {a['median_us']:8.1f} us {a['tflops']:6.1f} TFLOP/s")
    for name, b in r.get(key, {}).get("backends", {}).items():
        print(f"  sdpa {name:28s} " + (f"{b['median_us']:8.1f} us {b['tflops']:6.1f} TFLOP/s" if "median_us" in b
                                       else "unsupported: " + b["unsupported"][:100]))
PY
  [[ -s "$OUT/e2e.err" ]] && tail -20 "$OUT/e2e.err" >> "$OUT/machine.txt"
  rm -f "$OUT/e2e.err"
else
  echo '{"bench": "torch_e2e", "skipped": "no PyTorch/transformers on this machine"}' > "$OUT/bench_torch_e2e.json"
  say "transformers baseline: skipped (no PyTorch/transformers here)"
fi

# ---- 5. compute-sanitizer (last: slowest, and "unavailable" on some machines) -----------------
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
: > "$OUT/sanitizer.log"
sanitize() {  # label cap_seconds tool binary [args...]: one run, appended to sanitizer.log
  local label="$1" cap="$2" tool="$3"; shift 3
  has_time "$label" || return
  cap=$(cap "$cap")
  local log="$OUT/sanitizer.tmp"
  local extra=()
  [[ "$tool" == memcheck ]] && extra=(--leak-check full)
  timeout "$cap" "$SAN" --tool "$tool" --error-exitcode 99 "${extra[@]}" "$@" > "$log" 2>&1
  local rc=$?
  { echo "==== $label (compute-sanitizer --tool $tool, exit $rc) ===="; cat "$log"; } >> "$OUT/sanitizer.log"
  local summary_line
  summary_line=$(grep -m1 'ERROR SUMMARY\|RACECHECK SUMMARY' "$log")
  rm -f "$log"
  if [[ $rc -eq 0 && -n "$summary_line" ]]; then
    say "$label: clean — $summary_line"
  elif [[ $rc -eq 124 ]]; then
    say "$label: not finished within its ${cap} s cap (no finding before that; see sanitizer.log)"
  elif [[ $rc -eq 99 ]]; then
    say "FAIL $label: $summary_line (see sanitizer.log)"; FAILED=1
  elif [[ -z "$summary_line" ]]; then
    say "$label: unavailable on this machine (exit $rc: $(grep -m1 -iE 'error|unable|not supported' "$OUT/sanitizer.log"))"
  else
    say "FAIL $label run (exit $rc): $summary_line"; FAILED=1
  fi
}
if [[ -z "$SAN" ]]; then
  echo "compute-sanitizer not found" > "$OUT/sanitizer.log"
  say "sanitizers: unavailable (compute-sanitizer not found)"
else
  sanitize "memcheck GPU tests" 150 memcheck "$BIN/vlmserve_gpu_tests" \
    --gtest_filter='-CudaAttentionTest.Planned*'
  VLMSERVE_GPU_SMALL=1 sanitize "memcheck planned attention (small shapes)" 60 memcheck \
    "$BIN/vlmserve_gpu_tests" --gtest_filter='CudaAttentionTest.Planned*'
  if [[ -x "$BIN/vlmserve_gpu_runner_tests" ]]; then
    VLMSERVE_SOURCE_DIR="$ROOT" sanitize "memcheck CUDA runner tests" 120 memcheck \
      "$BIN/vlmserve_gpu_runner_tests"
  fi
  VLMSERVE_GPU_SMALL=1 sanitize "racecheck attention (small shapes)" 90 racecheck \
    "$BIN/vlmserve_gpu_tests" --gtest_filter='CudaAttentionTest.*'
fi

say "total $(elapsed); result: $( ((FAILED)) && echo FAILED || echo ok)"
exit $FAILED
