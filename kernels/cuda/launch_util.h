// Host-side helpers for kernel launchers: argument checks that produce INVALID_ARGUMENT naming
// the op, and launch-shape arithmetic.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "common/status.h"

namespace vlmserve::gpu {

inline Status BadArgs(const char* op, const std::string& what) {
  return InvalidArgumentError(std::string(op) + ": " + what);
}

// Threads per block for a block-per-row kernel handling `chunks` vector chunks per row: whole
// warps, at most 256, balanced so every pass over the row keeps the threads busy (320 chunks → 160
// threads × 2, not 256 + 64).
inline int RowThreads(int64_t chunks) {
  const int64_t passes = std::max<int64_t>(1, (chunks + 255) / 256);
  const int64_t per_pass = (chunks + passes - 1) / passes;
  return static_cast<int>(std::clamp<int64_t>((per_pass + 31) / 32, 1, 8) * 32);
}

// How a row kernel that keeps its row in registers (16-byte chunks of 8 bf16) is launched: a warp
// per row for rows of up to 2048 elements (per-head norms: 256; SigLIP's LayerNorm: 1152), each
// lane holding chunks_per_thread ∈ {1, 2, 4, 8} chunks and reducing by shuffles alone; else a
// block per row, each thread holding 2 or 4 chunks. chunks_per_thread == 0: the row is too
// long for registers (over 8192 elements) — use the streaming kernel.
struct RowPlan {
  bool warp_per_row = false;
  int threads = 0, chunks_per_thread = 0;
  int64_t blocks = 0;
};
inline RowPlan PlanRegisterRow(int64_t rows, int64_t chunks) {
  RowPlan p;
  auto round_c = [](int64_t c, int64_t max) {
    const int64_t r = c <= 1 ? 1 : c <= 2 ? 2 : c <= 4 ? 4 : c <= 8 ? 8 : 0;
    return static_cast<int>(r <= max ? r : 0);
  };
  if (chunks <= 8 * 32) {
    p.warp_per_row = true;
    p.chunks_per_thread = round_c((chunks + 31) / 32, 8);
    p.threads = 256;  // 8 rows per block
    p.blocks = (rows + 7) / 8;
    return p;
  }
  p.chunks_per_thread = round_c((chunks + 255) / 256, 4);  // chunks > 256: 2 or 4
  if (p.chunks_per_thread == 0) return p;
  const int64_t per_thread = p.chunks_per_thread;
  p.threads = static_cast<int>(
      std::clamp<int64_t>(((chunks + per_thread - 1) / per_thread + 31) / 32, 1, 8) * 32);
  p.blocks = rows;
  return p;
}

// Blocks for a grid-stride elementwise kernel over n items (never 0, capped so the grid fits).
inline unsigned ElementBlocks(int64_t n, int threads) {
  return static_cast<unsigned>(
      std::clamp<int64_t>((n + threads - 1) / threads, 1, int64_t{1} << 20));
}

constexpr int64_t kMaxGridRows = 0x7fffffff;  // gridDim.x limit

// Calls launch(std::integral_constant<int, C>, std::bool_constant<warp_per_row>) with the plan's
// values as compile-time constants (6 instantiations per kernel). Requires chunks_per_thread > 0.
template <typename Launch>
void DispatchRowPlan(const RowPlan& p, Launch&& launch) {
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  using Four = std::integral_constant<int, 4>;
  using Eight = std::integral_constant<int, 8>;
  if (p.warp_per_row) {
    if (p.chunks_per_thread == 1)
      launch(One{}, std::true_type{});
    else if (p.chunks_per_thread == 2)
      launch(Two{}, std::true_type{});
    else if (p.chunks_per_thread == 4)
      launch(Four{}, std::true_type{});
    else
      launch(Eight{}, std::true_type{});
  } else {
    if (p.chunks_per_thread == 2)
      launch(Two{}, std::false_type{});
    else
      launch(Four{}, std::false_type{});
  }
}

}  // namespace vlmserve::gpu
