#!/usr/bin/env bash
# bundle.sh (runs HERE, on the CPU machine) — build everything the GPU check needs for sm_90 with
# -lineinfo into build-gpu/, and copy the binaries plus every shared library they need that is
# neither glibc nor CUDA into .gpu-bundle/bundle.tar.xz (git-ignored; with the working tree under
# the device tool's 64 MiB), ready to travel with
#   run(command="scripts/gpu/check.sh", carry=[".gpu-bundle"]).
#
# Layout of .gpu-bundle/ (packed into bundle.tar.xz; check.sh unpacks it in place):
#   bin/            test and benchmark binaries
#   lib/            non-glibc, non-CUDA shared libraries (gRPC, protobuf, ... when a binary needs them)
#   lib-fallback/   libstdc++ / libgcc_s, used there only if the machine's own are missing or too old
#   googletest/     GoogleTest sources for plan B (a native minimal build on the GPU machine)
#   MANIFEST        commit, date, build flags, what was copied
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BUILD=build-gpu
BUNDLE=.gpu-bundle
# The device tool carries at most 64 MiB in all, the working tree (≈ 19 MiB) included; the bundle
# travels as an xz archive (see the end).
MAX_MIB=40
TARGETS=(vlmserve_gpu_tests vlmserve_gpu_runner_tests vlmserve_kernel_ref_tests vlmserve_bench_gemm
         vlmserve_bench_kernels vlmserve-inspect vlmserve-dump vlmserve vlmserve-client vlmserve-bench)
# Tools that never need host symbols there (the test binaries keep theirs for readable failures).
STRIP=(vlmserve vlmserve-client vlmserve-bench vlmserve-dump vlmserve-inspect)

command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
command -v nvcc >/dev/null || { echo "bundle.sh: nvcc not found; the GPU bundle needs the CUDA toolkit" >&2; exit 1; }
scripts/bootstrap.sh --deps-only
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVLMSERVE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DVLMSERVE_LINEINFO=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}"

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/lib-fallback"
for t in "${TARGETS[@]}"; do cp "$BUILD/bin/$t" "$BUNDLE/bin/"; done
for t in "${STRIP[@]}"; do strip --strip-unneeded "$BUNDLE/bin/$t"; done

# The real Gemma 3 tokenizer (33 MB; 3.4 MB as xz) for the server stage on the random 4B weights
# (scripts/gpu/serve_check.sh): the GPU machine has no copy of ../shared.
SHARED_GEMMA="$ROOT/../shared/gemma3"
if [[ -f "$SHARED_GEMMA/tokenizer.json" ]]; then
  mkdir -p "$BUNDLE/gemma3"
  xz -9 -c "$SHARED_GEMMA/tokenizer.json" > "$BUNDLE/gemma3/tokenizer.json.xz"
  cp "$SHARED_GEMMA/generation_config.json" "$BUNDLE/gemma3/" 2>/dev/null || true
else
  echo "bundle.sh: no $SHARED_GEMMA/tokenizer.json: the GPU check will skip the 4B server stage" >&2
fi

# glibc's own libraries and the CUDA libraries (the GPU machine has its own, matching its driver)
# never travel. libstdc++/libgcc_s go to lib-fallback/: a newer system's copies are backward
# compatible and must win, or CUDA libraries built against them could break.
is_glibc() { [[ "$1" =~ ^(libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|ld-linux-x86-64)\.so ]]; }
is_cuda() { [[ "$1" =~ ^(libcuda|libcudart|libcublas|libcublasLt|libnvrtc|libnvJitLink|libcudnn)[.-] ]]; }
copied=()
for bin in "$BUNDLE"/bin/*; do
  while read -r name path; do
    [[ -z "$path" || "$path" == "not" ]] && { echo "bundle.sh: $bin needs $name, not found here" >&2; exit 1; }
    is_glibc "$name" && continue
    is_cuda "$name" && continue
    dest="$BUNDLE/lib"
    [[ "$name" =~ ^(libstdc\+\+|libgcc_s)\.so ]] && dest="$BUNDLE/lib-fallback"
    if [[ ! -e "$dest/$name" ]]; then cp -L "$path" "$dest/$name"; copied+=("$name"); fi
  done < <(ldd "$bin" | awk '/=>/ {print $1, $3}')
done

# Plan B material: GoogleTest sources (Debian's googletest package) for a native minimal build.
if [[ -d /usr/src/googletest ]]; then
  cp -r /usr/src/googletest "$BUNDLE/googletest"
fi

{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "built on: $(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -1)"
  echo "nvcc: $(nvcc --version | tail -1)"
  echo "flags: Release, CUDA arch 90, -lineinfo"
  echo "binaries: ${TARGETS[*]}"
  echo "libraries copied: ${copied[*]:-none}"
} > "$BUNDLE/MANIFEST"

# What travels is the working tree (tracked and untracked-not-ignored files) plus the bundle, 64 MiB
# in all: unpacked, the bundle alone is ≈ 58 MiB, so it travels as one xz archive (≈ 4× smaller)
# that check.sh unpacks there first (tar, or Python's lzma where tar has no xz).
unpacked_mib=$(( $(du -sb "$BUNDLE" | cut -f1) / 1048576 ))
cat "$BUNDLE/MANIFEST"
cp "$BUNDLE/MANIFEST" "$BUNDLE.MANIFEST.tmp"
tar -C "$BUNDLE" -cf - . | xz -6 -T0 -c > "$BUNDLE.tar.xz.tmp"
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"
mv "$BUNDLE.tar.xz.tmp" "$BUNDLE/bundle.tar.xz"
mv "$BUNDLE.MANIFEST.tmp" "$BUNDLE/MANIFEST"
size_mib=$(( ($(du -sb "$BUNDLE" | cut -f1) + 1048575) / 1048576 ))
tree_mib=$(( ($(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null |
               tail -1 | cut -f1) + 1048575) / 1048576 ))
echo "bundle: $BUNDLE/bundle.tar.xz, ${size_mib} MiB (${unpacked_mib} MiB unpacked); working tree ${tree_mib} MiB;" \
     "together $((size_mib + tree_mib)) of the device tool's 64 MiB"
if (( size_mib > MAX_MIB || size_mib + tree_mib > 62 )); then
  echo "bundle.sh: ${size_mib} MiB bundle + ${tree_mib} MiB tree is over the budget (${MAX_MIB} MiB" \
       "bundle, 62 MiB together)" >&2
  exit 1
fi
