// Host-side helpers for kernel launchers: argument checks that produce INVALID_ARGUMENT naming
// the op, and launch-shape arithmetic.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace vlmserve::gpu {

inline Status BadArgs(const char* op, const std::string& what) {
  return InvalidArgumentError(std::string(op) + ": " + what);
}

// Threads per block for a row kernel handling `chunks` vector chunks per row: one warp at least,
// 256 at most, whole warps.
inline int RowThreads(int64_t chunks) {
  const int64_t warps = std::clamp<int64_t>((chunks + 31) / 32, 1, 8);
  return static_cast<int>(warps * 32);
}

// Blocks for a grid-stride elementwise kernel over n items (never 0, capped so the grid fits).
inline unsigned ElementBlocks(int64_t n, int threads) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + threads - 1) / threads, 1, int64_t{1} << 20));
}

constexpr int64_t kMaxGridRows = 0x7fffffff;  // gridDim.x limit

}  // namespace vlmserve::gpu
