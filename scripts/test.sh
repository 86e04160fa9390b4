#!/usr/bin/env bash
# test.sh — install, build and run every test; what CI runs (.ci/run). Prints the time of each stage.
#
# Stages:
#   1. bootstrap: packages + an ASan/UBSan build (GCC, -O1 -g) in build-asan/ (CUDA AUTO: the CUDA
#      kernels compile, GPU tests skip without a device)
#   2. ctest: every unit, CLI, GPU (skipping) and fuzz-corpus-replay test under the sanitizers
#   3. fuzz: the libFuzzer targets built with clang in build-fuzz/ and run for a short smoke
#      (VLMSERVE_FUZZ_SECONDS each, default 10) on a scratch copy of their corpora
#
# Environment: VLMSERVE_CUDA=AUTO|ON|OFF, VLMSERVE_FUZZ_SECONDS, VLMSERVE_SKIP_FUZZ=1,
#              VLMSERVE_SHARED_DIR (where gemma3/ reference files are; default ../shared).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FUZZ_SECONDS="${VLMSERVE_FUZZ_SECONDS:-10}"
START=$(date +%s)
declare -a SUMMARY=()

stage() {  # stage NAME COMMAND...: run, time, record
  local name="$1"; shift
  local t0=$(date +%s)
  printf '\n===== %s =====\n' "$name"
  if "$@"; then
    SUMMARY+=("$(printf '%-10s %4ds  ok' "$name" $(( $(date +%s) - t0 )))")
  else
    local rc=$?
    SUMMARY+=("$(printf '%-10s %4ds  FAILED (exit %d)' "$name" $(( $(date +%s) - t0 )) "$rc")")
    print_summary
    exit "$rc"
  fi
}

print_summary() {
  printf '\n===== summary (total %ds) =====\n' $(( $(date +%s) - START ))
  printf '%s\n' "${SUMMARY[@]}"
}

# LSan needs ptrace-free leak detection; abort on the first UBSan report (-fno-sanitize-recover).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

stage bootstrap scripts/bootstrap.sh --build-dir build-asan --type Debug --sanitize
stage ctest ctest --test-dir build-asan --output-on-failure -j "$(nproc)" --timeout 600

fuzz_smoke() {
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_COMPILER=clang++ -DVLMSERVE_CUDA=OFF -DVLMSERVE_FUZZ=ON -DVLMSERVE_SANITIZE=ON \
    >/dev/null
  local targets
  targets=$(ls tests/fuzz/corpus)
  cmake --build build-fuzz -j "$(nproc)" --target $(printf 'vlmserve_fuzz_%s ' $targets)
  for t in $targets; do
    local scratch
    scratch=$(mktemp -d)
    cp -r "tests/fuzz/corpus/$t/." "$scratch/"
    local dict=()
    [[ -f tests/fuzz/dict/$t.dict ]] && dict=(-dict="tests/fuzz/dict/$t.dict")
    echo "fuzzing $t for ${FUZZ_SECONDS}s"
    # Crash artefacts go to build-fuzz/ so they are not lost and never land in the source tree.
    if ! build-fuzz/bin/vlmserve_fuzz_"$t" "${dict[@]}" -max_total_time="$FUZZ_SECONDS" \
         -max_len=65536 -artifact_prefix=build-fuzz/ -print_final_stats=1 "$scratch" \
         2>&1 | tail -n 15; then
      echo "fuzz target $t failed; reproducer in build-fuzz/ (add it to tests/fuzz/corpus/$t)"
      rm -rf "$scratch"
      return 1
    fi
    rm -rf "$scratch"
  done
}
if [[ "${VLMSERVE_SKIP_FUZZ:-0}" != 1 ]]; then
  stage fuzz fuzz_smoke
fi

print_summary
