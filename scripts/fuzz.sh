#!/usr/bin/env bash
# fuzz.sh — build the libFuzzer targets (clang, ASan + UBSan) in build-fuzz/ and run them.
#
#   scripts/fuzz.sh --smoke [TARGET...]
#       What CI runs (scripts/test.sh): each target executes a fixed number of inputs (200,000;
#       50,000 for tokenizer, 20,000 for the slow tokenizer_json — about 90 s in all on 2 cores;
#       VLMSERVE_FUZZ_RUNS overrides) from a fixed seed, its corpus read in a fixed order,
#       with address-space randomisation off (setarch -R). The same commit explores the same
#       inputs on every run, so a finding is a reproducible crash of that commit, never a draw.
#   scripts/fuzz.sh [--seconds N] [TARGET...]
#       Random fuzzing for N seconds per target (default 600) from a random seed; inputs that
#       add coverage are kept in build-fuzz/corpus-new/<target>/ — minimise them into
#       tests/fuzz/corpus/<target>/ with -merge=1 when they are worth keeping.
#
# Memory ceilings (every target needs < 20 MiB of plain RSS on its corpus; the image targets'
# limits keep pixel buffers under 1 MiB, JSON inputs are capped at 1 MiB):
#   -malloc_limit_mb=64   one allocation above it is a finding, reported at the malloc with its
#                         stack and the input (this is what catches a "declared length" bomb)
#   -rss_limit_mb=1024    the whole process under ASan (shadow memory and quarantine included)
#   -timeout=30           seconds per input
# A finding prints libFuzzer's whole report and leaves the reproducer in build-fuzz/artifacts/;
# once fixed, add it to tests/fuzz/corpus/<target>/ so fuzz_replay_<target> keeps it fixed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SMOKE=0
SECONDS_EACH=600
TARGETS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
[[ ${#TARGETS[@]} -eq 0 ]] && mapfile -t TARGETS < <(ls tests/fuzz/corpus)
# Inputs per target in --smoke mode: sized so that each takes 5-25 s here.
runs_for() {
  if [[ -n "${VLMSERVE_FUZZ_RUNS:-}" ]]; then echo "$VLMSERVE_FUZZ_RUNS"; return; fi
  case "$1" in
    tokenizer_json) echo 20000 ;;  # ≈ 830 inputs/s under ASan: every input is a whole file
    tokenizer) echo 50000 ;;       # ≈ 2,500 inputs/s
    action_schema) echo 50000 ;;   # a compiled schema is walked and masked: slower inputs
    lora_config) echo 50000 ;;     # regexes from the input are compiled and run
    *) echo 200000 ;;              # 12,000-100,000 inputs/s
  esac
}

cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_COMPILER=clang++ -DVLMSERVE_CUDA=OFF -DVLMSERVE_FUZZ=ON -DVLMSERVE_SANITIZE=ON \
  >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target $(printf 'vlmserve_fuzz_%s ' "${TARGETS[@]}")

# Address-space randomisation off, when this machine allows it (personality(2) may be refused
# inside some containers; the run is then still seeded but addresses may differ between runs).
NORAND=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  NORAND=(setarch "$(uname -m)" -R)
elif [[ $SMOKE -eq 1 ]]; then
  echo "fuzz.sh: note: setarch -R is not permitted here; addresses are randomised"
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p build-fuzz/artifacts build-fuzz/logs
failed=0
for t in "${TARGETS[@]}"; do
  [[ -d tests/fuzz/corpus/$t ]] || { echo "fuzz.sh: no corpus for target '$t'" >&2; exit 2; }
  out="build-fuzz/corpus-new/$t"
  rm -rf "$out" && mkdir -p "$out"
  # The committed corpus as an explicit, sorted list: libFuzzer then reads it in this order
  # whatever order the file system lists a directory in.
  list="build-fuzz/logs/$t.seeds"
  (cd tests/fuzz/corpus/"$t" && find . -type f | LC_ALL=C sort | sed "s|^\.|tests/fuzz/corpus/$t|") \
    | paste -sd, > "$list"
  args=(-seed_inputs=@"$list" -max_len=65536 -malloc_limit_mb=64 -rss_limit_mb=1024 -timeout=30
        -reload=0 -artifact_prefix="build-fuzz/artifacts/$t-" -print_final_stats=1)
  [[ -f tests/fuzz/dict/$t.dict ]] && args+=(-dict="tests/fuzz/dict/$t.dict")
  if [[ $SMOKE -eq 1 ]]; then
    args+=(-seed=1 -runs="$(runs_for "$t")")
    echo "fuzzing $t: $(runs_for "$t") inputs from seed 1"
  else
    args+=(-max_total_time="$SECONDS_EACH")
    echo "fuzzing $t for ${SECONDS_EACH}s"
  fi
  log="build-fuzz/logs/$t.log"
  # A fixed, minimal environment and relative paths: with address randomisation off, the stack's
  # addresses still move with the size of the environment and of argv, and compared pointers feed
  # libFuzzer's mutations (-use_cmp). The same commit then runs the same inputs on any machine.
  if env -i PATH=/usr/bin:/bin ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS" \
       "${NORAND[@]}" build-fuzz/bin/vlmserve_fuzz_"$t" "${args[@]}" "$out" >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+.*DONE)' "$log" | tr '\n' ' '
    echo
  else
    # The whole report: the reproducer's name, the stack, the allocation that was too large.
    echo "===== fuzz target $t FAILED; its whole log ($log) follows ====="
    cat "$log"
    echo "===== end of $t's log; reproducer(s): $(ls build-fuzz/artifacts/"$t"-* 2>/dev/null | tr '\n' ' ')"
    echo "replay: build-fuzz/bin/vlmserve_fuzz_$t build-fuzz/artifacts/$t-<file>"
    failed=1
  fi
done
exit $failed
