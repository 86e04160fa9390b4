// What the tensor-core attention kernels share (attention_vision72.cu, attention_paged.cu): the PTX
// wrappers — cp.async global → shared copies, ldmatrix, and mma.sync m16n8k16 with bf16 inputs and
// fp32 accumulators (sm_80+; callers guard with __CUDA_ARCH__ >= 800) — and FlashAttention-2's
// per-tile steps built on them (namespace flash). Where each lane's fragment elements sit is
// kernels/mma_fragments.h (CPU-tested).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mma_fragments.h"

namespace vlmserve::gpu::ptx {

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global → shared, asynchronously; zeros instead when !valid (src is then not read, but
// must still be a valid address expression).
__device__ __forceinline__ void CpAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncWaitAll() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::);
}

__device__ __forceinline__ void Ldsm4(uint32_t (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p)));
}
__device__ __forceinline__ void Ldsm4T(uint32_t (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(p)));
}
__device__ __forceinline__ void Ldsm2T(uint32_t (&r)[2], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(SmemAddr(p)));
}

// d (16×8 fp32) += a (16×16 bf16, row-major fragment) · b (16×8 bf16, column fragment).
__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}

// The compute capability major of the current device (0 when it cannot be read), read once.
inline int CurrentSmMajor() {
  static const int major = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      return 0;
    }
    return v;
  }();
  return major;
}

}  // namespace vlmserve::gpu::ptx

namespace vlmserve::gpu::flash {

// FlashAttention-2's per-tile steps for a warp's 16 query rows, shared by the tensor-core attention
// kernels. Each lane holds two rows: C-fragment rows lane/4 (i = 0) and lane/4 + 8 (i = 1).

// The online softmax over one tile of NT n-tiles of scores `s` (already in the log2 domain, −inf
// where masked): the rows' new maximum over the quad, O (NO n-tiles) and the lane's partial row
// sums l rescaled, s replaced by 2^(s − max) and added to l. A row with no allowed key so far
// exponentiates against 0 (every p is 0), never −inf − −inf.
template <int NT, int NO>
__device__ __forceinline__ void OnlineSoftmax(float (&s)[NT][4], float (&m)[2], float (&l)[2],
                                              float (&o)[NO][4]) {
  float mx[2] = {m[0], m[1]};
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    mx[0] = fmaxf(mx[0], fmaxf(s[j][0], s[j][1]));
    mx[1] = fmaxf(mx[1], fmaxf(s[j][2], s[j][3]));
  }
  float base[2], corr[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
    base[i] = mx[i] == -INFINITY ? 0.f : mx[i];
    corr[i] = exp2f(m[i] - base[i]);
    m[i] = mx[i];
    l[i] *= corr[i];
  }
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[j][e] = exp2f(s[j][e] - base[e >> 1]);
      l[e >> 1] += s[j][e];
    }
  }
#pragma unroll
  for (int t = 0; t < NO; ++t) {
    o[t][0] *= corr[0];
    o[t][1] *= corr[0];
    o[t][2] *= corr[1];
    o[t][3] *= corr[1];
  }
}

// P for k-step kk (keys 16kk .. 16kk + 15) as an A fragment: the C layout of S's n-tiles 2kk and
// 2kk + 1 is the A layout of one 16-wide k-step (mma_fragments.h), rounded to bf16.
template <int NT>
__device__ __forceinline__ void PFragment(const float (&s)[NT][4], int kk, uint32_t (&pa)[4]) {
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const float* p = s[mma::PTile(kk, r)] + mma::PFirst(r);
    pa[r] = ptx::PackBf16(p[0], p[1]);
  }
}

// O's n-tiles [0, 2·NP) += P · V for one k-step, V's 16 key rows starting at `vrow` (row stride
// `row` elements) read two n-tiles at a time by ldmatrix.x4.trans.
template <int NP, int NO>
__device__ __forceinline__ void AccumulatePV(const uint32_t (&pa)[4], const __nv_bfloat16* vrow,
                                             int lane, float (&o)[NO][4]) {
  static_assert(2 * NP <= NO, "");
#pragma unroll
  for (int np = 0; np < NP; ++np) {
    uint32_t b[4];
    ptx::Ldsm4T(b, vrow + mma::VCol(np * 16, lane));
    ptx::Mma(o[2 * np], pa, b[0], b[1]);
    ptx::Mma(o[2 * np + 1], pa, b[2], b[3]);
  }
}

// The lane's partial row sums completed over its quad.
__device__ __forceinline__ void QuadRowSums(float (&l)[2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
}

}  // namespace vlmserve::gpu::flash
