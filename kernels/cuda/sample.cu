// Greedy sampling kernel (see sample.h): one block per sample walks its logits row twice — the
// best allowed token and the counts, then Σ exp(logit − best) over the allowed tokens in double.
// 512 threads: a 262,208-token row (512 KB of bf16) is 64 16-byte chunks per thread and pass;
// a step's samples (one per sequence) are its blocks, so a batch of a few dozen fills the SMs.
#include <cmath>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/sample.h"
#include "kernels/sample_select.h"

namespace vlmserve::gpu {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ bool Allows(const uint32_t* mask, int64_t id) {
  return !mask || ((mask[id >> 5] >> (id & 31)) & 1u);
}

// The warp's combined Best (a butterfly: every lane gets it; Combine is order-free).
__device__ __forceinline__ sel::Best WarpBest(sel::Best b) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    sel::Best other;
    other.value = __shfl_xor_sync(0xffffffffu, b.value, o);
    other.id = __shfl_xor_sync(0xffffffffu, b.id, o);
    b = sel::Combine(b, other);
  }
  return b;
}

// The block's combined Best; every thread gets it. `scratch` holds kWarps entries.
__device__ sel::Best BlockBest(sel::Best b, sel::Best* scratch) {
  b = WarpBest(b);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = b;
  __syncthreads();
  return WarpBest(lane < kWarps ? scratch[lane] : sel::Best{});
}

template <typename T>
__device__ T BlockTotal(T v, T* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < kWarps ? scratch[lane] : T{0};
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// V = 8: 16-byte loads (vocab % 8 == 0, aligned rows; a chunk never straddles a mask word);
// V = 1: any vocabulary.
template <int V>
__global__ void __launch_bounds__(kThreads) GreedyKernel(GreedySampleArgs a) {
  __shared__ sel::Best best_scratch[kWarps];
  __shared__ int count_scratch[kWarps];
  __shared__ double sum_scratch[kWarps];
  const int64_t s = blockIdx.x;
  const int32_t row = a.rows[s];
  if (row < 0 || row >= a.logit_rows) {  // never from the runner; an empty result, not a bad read
    if (threadIdx.x == 0) a.out[s] = GreedyResult{};
    return;
  }
  const __nv_bfloat16* logits = a.logits + int64_t{row} * a.vocab;
  const int32_t m = a.mask_of ? a.mask_of[s] : -1;
  const uint32_t* mask = m >= 0 ? a.masks + int64_t{m} * ((a.vocab + 31) / 32) : nullptr;

  sel::Best best;
  int allowed = 0, nonfinite = 0;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.vocab; c += int64_t{kThreads} * V) {
    float v[V];
    LoadBf16<V>(logits + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const int64_t id = c + i;
      if (!Allows(mask, id)) continue;
      ++allowed;
      if (!isfinite(v[i])) {
        ++nonfinite;
      } else {
        best = sel::Consider(best, v[i], static_cast<int32_t>(id));
      }
    }
  }
  best = BlockBest(best, best_scratch);
  allowed = BlockTotal(allowed, count_scratch);
  nonfinite = BlockTotal(nonfinite, count_scratch);
  if (allowed == 0 || nonfinite > 0) {  // the host's SampleRef decides (see sample.h)
    if (threadIdx.x == 0) a.out[s] = GreedyResult{-1, allowed, nonfinite, 0.f};
    return;
  }

  // log p(best) over the allowed tokens at temperature 1, as SampleRef: in double.
  const double top = best.value;
  double z = 0;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.vocab; c += int64_t{kThreads} * V) {
    float v[V];
    LoadBf16<V>(logits + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      if (Allows(mask, c + i)) z += exp(static_cast<double>(v[i]) - top);
    }
  }
  z = BlockTotal(z, sum_scratch);
  if (threadIdx.x == 0) {
    const double log_z = top + log(z);
    a.out[s] = GreedyResult{best.id, allowed, 0, static_cast<float>(best.value - log_z)};
  }
}

}  // namespace

Status GreedySample(const GreedySampleArgs& a, cudaStream_t stream) {
  if (a.samples < 0 || a.logit_rows < 0 || a.vocab <= 0)
    return BadArgs("GreedySample", "sizes must be positive");
  if (a.vocab > INT32_MAX) return BadArgs("GreedySample", "vocabulary too large for int32 ids");
  if (a.samples > kMaxGridRows) return BadArgs("GreedySample", "too many samples");
  if (a.samples == 0) return Status::Ok();
  if (!a.logits || !a.rows || !a.out) return BadArgs("GreedySample", "null pointer");
  if (a.mask_of && !a.masks) return BadArgs("GreedySample", "mask indices without masks");
  const unsigned blocks = static_cast<unsigned>(a.samples);
  if (a.vocab % 8 == 0 && Aligned16(a.logits)) {
    GreedyKernel<8><<<blocks, kThreads, 0, stream>>>(a);
  } else {
    GreedyKernel<1><<<blocks, kThreads, 0, stream>>>(a);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
