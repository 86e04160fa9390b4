// The vision tower's attention at head_dim 72 on tensor cores (attention.h, DenseAttention's fast
// path; issue 24). NOT YET RUN ON A GPU: written in a CPU session, checked against the CPU
// reference by tests/kernels/cuda_attention_test.cc (DenseFast*) in the GPU check.
//
// FlashAttention-2's scheme with mma.sync m16n8k16 (bf16 in, fp32 accumulate; sm_80+, so one code
// path for A100, L4/L40 and H100/H200 — wgmma would need a Hopper-only kernel and 64-row warpgroup
// tiles that fit d = 72 no better):
//   block = 4 warps = 64 query rows of one (image, head); each warp owns 16 rows.
//   Q [64 × 72] is loaded once into shared memory and kept in registers as A fragments over five
//   k-steps of 16 (d padded 72 → 80 with zero columns in shared memory only: 11 % extra MMA work
//   in the QKᵀ product, none in PV, none in memory traffic — not 72 → 128 as the public kernels).
//   K and V tiles of 64 keys: S = Q Kᵀ (8 n-tiles of 8 keys), online softmax in registers (exp2
//   with scale·log2 e folded in, row max/sum over the 4 lanes of a quad), P rounded to bf16 as
//   the A operand of O += P V (9 n-tiles of 8 output columns: exactly 72), O in fp32 registers,
//   divided by the row sum and rounded to bf16 once.
// Shared rows are 88 bf16 apart (176 bytes): 16-byte aligned for ldmatrix/cp.async, and the 8
// rows of one ldmatrix land in 8 distinct 4-bank groups (no bank conflicts).
#include "kernels/cuda/attention_vision72.h"

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/mma_fragments.h"

namespace vlmserve::gpu {
namespace {

using bf16 = __nv_bfloat16;
using namespace ptx;  // NOLINT: the PTX wrappers read as instructions
constexpr int kD = 72;          // head_dim
constexpr int kRow = 88;        // shared row stride (elements): 72 values, 8 zeros, 8 unused
constexpr int kBM = 64;         // query rows per block (4 warps × 16)
constexpr int kBN = 64;         // keys per tile
constexpr int kThreads = 128;
constexpr int kChunks = kD / 8;  // 16-byte chunks per row: 9

struct __align__(16) Smem {
  bf16 q[kBM * kRow];
  bf16 k[kBN * kRow];
  bf16 v[kBN * kRow];
};

// Rows [first, first + 64) of one (image, head) into a shared tile (rows ≥ n become zeros).
__device__ __forceinline__ void LoadTile(bf16* tile, const bf16* base, int64_t first, int64_t n,
                                         int64_t stride, int tid) {
  for (int i = tid; i < kBM * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const bool valid = first + r < n;
    const bf16* src = base + (valid ? (first + r) * stride : 0) + c * 8;
    CpAsync16(tile + r * kRow + c * 8, src, valid);
  }
}

__global__ void __launch_bounds__(kThreads)
    VisionAttention72Kernel(DenseAttentionArgs a, int64_t stride) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ Smem sm;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t n = a.n, img = blockIdx.z, h = blockIdx.y;
  const int64_t q0 = int64_t{blockIdx.x} * kBM;
  const int64_t head_off = img * n * stride + h * kD;

  // Columns 72..79 take part in the QKᵀ k-steps: zero in Q and K (cp.async never writes them).
  for (int r = tid; r < kBM; r += kThreads) {
    *reinterpret_cast<uint4*>(sm.q + r * kRow + kD) = make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4*>(sm.k + r * kRow + kD) = make_uint4(0, 0, 0, 0);
  }
  LoadTile(sm.q, a.q + head_off, q0, n, stride, tid);
  CpAsyncWaitAll();
  __syncthreads();

  // This warp's 16 query rows as A fragments, k-steps of 16 over d (lanes 0-15: rows, column
  // offset 0; lanes 16-31: the same rows, offset 8).
  uint32_t qf[5][4];
#pragma unroll
  for (int ks = 0; ks < 5; ++ks) {
    Ldsm4(qf[ks], sm.q + mma::ARow(warp * 16, lane) * kRow + mma::ACol(ks * 16, lane));
  }

  const float scale_log2 = a.scale * 1.4426950408889634f;  // softmax in base 2
  float o[9][4] = {};
  float m[2] = {-INFINITY, -INFINITY};  // running max (scaled, log2 domain) of rows lane/4, +8
  float l[2] = {0.f, 0.f};              // this lane's part of the running row sums

  for (int64_t k0 = 0; k0 < n; k0 += kBN) {
    __syncthreads();  // every warp is done with the previous K/V tile
    LoadTile(sm.k, a.k + head_off, k0, n, stride, tid);
    LoadTile(sm.v, a.v + head_off, k0, n, stride, tid);
    CpAsyncWaitAll();
    __syncthreads();

    // S = Q Kᵀ: n-tiles of 8 keys in pairs (x4: keys +0..7 and +8..15, d +0 and +8).
    float s[8][4] = {};
#pragma unroll
    for (int ks = 0; ks < 5; ++ks) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b[4];
        Ldsm4(b, sm.k + mma::BKeyRow(np * 16, lane) * kRow + mma::BKeyCol(ks * 16, lane));
        Mma(s[2 * np], qf[ks], b[0], b[1]);
        Mma(s[2 * np + 1], qf[ks], b[2], b[3]);
      }
    }
    // Scale into the log2 domain; keys past the image (last tile) never count.
    const bool edge = k0 + kBN > n;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = k0 + j * 8 + mma::CCol(lane, e);
        s[j][e] = edge && key >= n ? -INFINITY : s[j][e] * scale_log2;
      }
    }
    // Online softmax (every tile holds at least one real key, k0 < n, so the max is finite).
    flash::OnlineSoftmax(s, m, l, o);
    // O += P V over k-steps of 16 keys: P's C fragments become A fragments in place; V through
    // ldmatrix.trans (rows are keys, columns d).
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t pa[4];
      flash::PFragment(s, kk, pa);
      const bf16* vrow = sm.v + mma::VKeyRow(kk * 16, lane) * kRow;
      flash::AccumulatePV<4>(pa, vrow, lane, o);  // columns 0..63
      uint32_t b[2];
      Ldsm2T(b, vrow + mma::VColX2(64, lane));  // columns 64..71 (lanes 16-31 repeat 0-15's rows)
      Mma(o[8], pa, b[0], b[1]);
    }
  }

  // The row sums over the quad, then bf16 pairs straight to global memory.
  flash::QuadRowSums(l);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t row = q0 + warp * 16 + mma::CRow(lane, 2 * half);
    if (row >= n) continue;
    const float inv = 1.f / l[half];
    bf16* out = a.o + ((img * n + row) * a.heads + h) * kD + mma::CCol(lane, 0);
#pragma unroll
    for (int t = 0; t < 9; ++t) {
      *reinterpret_cast<__nv_bfloat162*>(out + t * 8) =
          __floats2bfloat162_rn(o[t][2 * half] * inv, o[t][2 * half + 1] * inv);
    }
  }
#else
  __trap();  // launched only on sm_80+ (VisionAttention72Supported)
#endif
}

}  // namespace

bool VisionAttention72Supported(const DenseAttentionArgs& a, int64_t stride) {
  const auto aligned = [](const void* p, uintptr_t to) {
    return reinterpret_cast<uintptr_t>(p) % to == 0;
  };
  // 16-byte cp.async of every row: the stride and the bases in whole 8-element chunks; bf16
  // pairs stored to o.
  if (a.hd != kD || stride % 8 != 0 || !aligned(a.q, 16) || !aligned(a.k, 16) ||
      !aligned(a.v, 16) || !aligned(a.o, 4)) {
    return false;
  }
  if (a.n > int64_t{65535} * kBM || a.heads > 65535 || a.images > 65535) return false;  // grid
  return ptx::CurrentSmMajor() >= 8;
}

Status VisionAttention72(const DenseAttentionArgs& a, int64_t stride, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.n + kBM - 1) / kBM), static_cast<unsigned>(a.heads),
                  static_cast<unsigned>(a.images));
  VisionAttention72Kernel<<<grid, kThreads, 0, stream>>>(a, stride);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
