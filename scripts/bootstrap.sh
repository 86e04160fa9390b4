#!/usr/bin/env bash
# bootstrap.sh — install what vlmserve needs (Debian 12 / Ubuntu 24.04 packages, idempotent, sudo
# when not root), then configure and build. Executables land in <build dir>/bin.
#
#   scripts/bootstrap.sh [--build-dir DIR] [--type Release|RelWithDebInfo|Debug] [--sanitize]
#                        [--cuda AUTO|ON|OFF] [--no-build] [--deps-only] [-- extra cmake args]
#
# Defaults: build/, RelWithDebInfo, CUDA AUTO (on when nvcc is found; the CUDA toolkit itself is
# not installed here — it comes from NVIDIA's packages or the CUDA container image).
# Environment: VLMSERVE_CUDA (same as --cuda), VLMSERVE_JOBS (build parallelism).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
BUILD_TYPE=RelWithDebInfo
SANITIZE=OFF
CUDA="${VLMSERVE_CUDA:-AUTO}"
DO_BUILD=1
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$(realpath -m "$2")"; shift 2 ;;
    --type) BUILD_TYPE="$2"; shift 2 ;;
    --sanitize) SANITIZE=ON; shift ;;
    --cuda) CUDA="$2"; shift 2 ;;
    --no-build) DO_BUILD=0; shift ;;
    --deps-only) DO_BUILD=-1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bootstrap.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[bootstrap] %s\n' "$*"; }

# ---- packages --------------------------------------------------------------------------------
# Everything comes from the distribution (DEVELOPERS.md): compilers and build tools, the server's
# libraries, test tools (GoogleTest, Google Benchmark, clang + libFuzzer runtime) and Debian's
# grpcio for the independent Python gRPC client used by end-to-end tests.
PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev nlohmann-json3-dev libpng-dev libjpeg-dev libcpp-httplib-dev libcli11-dev
  libssl-dev openssl  # TLS material checks and API-key digests; openssl makes the tests' certificates
  libgtest-dev googletest libbenchmark-dev
  clang libclang-rt-dev
  python3 python3-grpcio python3-pil grpc-proto python3-venv  # pil: the demo game; venv: deploy/check.sh's linters
  prometheus  # promtool, which checks the metrics endpoint's exposition in the tests
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "bootstrap.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  log "all ${#PACKAGES[@]} packages present"
fi
[[ $DO_BUILD -eq -1 ]] && exit 0

# ---- configure and build ----------------------------------------------------------------------
# nvcc is often installed outside PATH (/usr/local/cuda/bin); let CMake's AUTO detection find it.
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc && "$CUDA" != OFF ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
log "configuring $BUILD_DIR (type $BUILD_TYPE, CUDA $CUDA, sanitize $SANITIZE)"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DVLMSERVE_CUDA="$CUDA" -DVLMSERVE_SANITIZE="$SANITIZE" \
  "${EXTRA[@]}"
[[ $DO_BUILD -eq 0 ]] && exit 0
JOBS="${VLMSERVE_JOBS:-$(nproc)}"
log "building with $JOBS jobs"
cmake --build "$BUILD_DIR" -j "$JOBS"
log "done: executables in $BUILD_DIR/bin"
