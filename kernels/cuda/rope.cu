// RoPE kernel (see rope.h). Threads are grouped per (token, head) row: each thread rotates V
// consecutive pairs (V = 8: 16-byte loads of both halves, when half % 8 == 0 and the rows are
// 16-byte aligned; else V = 1), so a row is read in wide coalesced transactions and its offset is
// computed once per thread. sincosf is the accurate version (full range reduction): θ reaches
// 131072 rad for local layers at long contexts.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/rope.h"
#include "kernels/index_math.h"

namespace vlmserve::gpu {
namespace {

// blockDim.x = rows_per_block · threads_per_row; a thread handles chunks lane, lane +
// threads_per_row, …
template <int V>
__global__ void RopeKernel(RopeArgs a, int threads_per_row) {
  const int64_t half = a.head_dim / 2, chunks = half / V, rows = a.tokens * a.heads;
  const int64_t r =
      int64_t{blockIdx.x} * (blockDim.x / threads_per_row) + threadIdx.x / threads_per_row;
  if (r >= rows) return;
  __nv_bfloat16* row = a.x + idx::HeadRowOffset(r, a.heads, a.head_dim, a.token_stride);
  const float pos = static_cast<float>(a.positions[r / a.heads]);
  for (int64_t k = threadIdx.x % threads_per_row; k < chunks; k += threads_per_row) {
    const int64_t i = k * V;  // pairs (i + e, idx::RopePartner(i + e) = i + e + half)
    float x0[V], x1[V];
    LoadBf16<V>(row + i, x0);
    LoadBf16<V>(row + idx::RopePartner(i, a.head_dim), x1);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      float s, c;
      sincosf(pos * a.inv_freq[i + e], &s, &c);
      const float lo = x0[e] * c - x1[e] * s, hi = x1[e] * c + x0[e] * s;
      x0[e] = lo;
      x1[e] = hi;
    }
    StoreBf16<V>(row + i, x0);
    StoreBf16<V>(row + idx::RopePartner(i, a.head_dim), x1);
  }
}

}  // namespace

Status Rope(const RopeArgs& args, cudaStream_t stream) {
  RopeArgs a = args;
  if (a.token_stride == 0) a.token_stride = a.heads * a.head_dim;
  if (!a.x || !a.positions || !a.inv_freq) return BadArgs("Rope", "null pointer");
  if (a.tokens < 0 || a.heads <= 0 || a.head_dim <= 0 || a.head_dim % 2 != 0)
    return BadArgs("Rope", "sizes must be positive and head_dim even");
  if (a.token_stride < a.heads * a.head_dim)
    return BadArgs("Rope", "token stride smaller than heads × head_dim");
  const int64_t rows = a.tokens * a.heads, half = a.head_dim / 2;
  if (rows == 0) return Status::Ok();
  const bool vec = half % 8 == 0 && a.token_stride % 8 == 0 && Aligned16(a.x);
  const int64_t chunks = vec ? half / 8 : half;
  constexpr int kThreads = 256;
  const int per_row = static_cast<int>(std::min<int64_t>(chunks, kThreads));
  const int rows_per_block = kThreads / per_row;
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  if (blocks > kMaxGridRows) return BadArgs("Rope", "too many rows");
  if (vec) {
    RopeKernel<8>
        <<<static_cast<unsigned>(blocks), rows_per_block * per_row, 0, stream>>>(a, per_row);
  } else {
    RopeKernel<1>
        <<<static_cast<unsigned>(blocks), rows_per_block * per_row, 0, stream>>>(a, per_row);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
