// Greedy sampling kernel (see sample.h): one block per sample walks its logits row twice — the
// best allowed token and the counts, then Σ exp(logit − best) over the allowed tokens in double.
// 512 threads: a 262,208-token row (512 KB of bf16) is 64 16-byte chunks per thread and pass;
// a step's samples (one per sequence) are its blocks, so a batch of a few dozen fills the SMs.
#include <cmath>
#include <cstdint>
#include <string>

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

// ---- TopCandidates (see sample.h) ----

// Floats as unsigned keys in the same order (larger float → larger key); −0 is made +0 first,
// since SampleRef sees them as equal (then the lower id goes first, as for any tie).
__device__ __forceinline__ uint32_t OrderKey(float v) {
  const uint32_t b = __float_as_uint(v == 0.f ? 0.f : v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float KeyValue(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// One block per sample, kThreads threads; entries of the kept set live in shared memory, one per
// thread for the sort (capacity ≤ kMaxTopCandidates = kThreads).
__global__ void __launch_bounds__(kThreads) TopCandidatesKernel(TopCandidatesArgs a) {
  static_assert(kMaxTopCandidates == kThreads, "one sort entry per thread");
  __shared__ sel::Best best_scratch[kWarps];
  __shared__ int count_scratch[kWarps];
  __shared__ double sum_scratch[kWarps];
  __shared__ uint32_t hist[256];
  __shared__ uint32_t sel_prefix, sel_mask, sel_remaining, sel_greater;
  __shared__ int gathered_greater, gathered_equal;
  __shared__ int warp_equal[kWarps];
  __shared__ uint32_t keys[kThreads];
  __shared__ int32_t ids[kThreads];
  const int64_t s = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int32_t row = a.rows[s];
  if (row < 0 || row >= a.logit_rows) {  // never from the runner; an empty result, not a bad read
    if (tid == 0) a.out[s] = TopSummary{};
    return;
  }
  const __nv_bfloat16* logits = a.logits + int64_t{row} * a.vocab;
  const int32_t m = a.mask_of ? a.mask_of[s] : -1;
  const uint32_t* mask = m >= 0 ? a.masks + int64_t{m} * ((a.vocab + 31) / 32) : nullptr;

  // 1. The best allowed logit, the counts.
  sel::Best best;
  int allowed = 0, nonfinite = 0;
  for (int64_t id = tid; id < a.vocab; id += kThreads) {
    if (!Allows(mask, id)) continue;
    const float v = __bfloat162float(logits[id]);
    ++allowed;
    if (!isfinite(v)) {
      ++nonfinite;
    } else {
      best = sel::Consider(best, v, static_cast<int32_t>(id));
    }
  }
  best = BlockBest(best, best_scratch);
  allowed = BlockTotal(allowed, count_scratch);
  nonfinite = BlockTotal(nonfinite, count_scratch);
  if (allowed == 0 || nonfinite > 0) {  // the host's SampleRef decides (see sample.h)
    if (tid == 0) a.out[s] = TopSummary{0, allowed, nonfinite, 0, 0.0, 0.0};
    return;
  }

  // 2. The normalisers in double, with SampleRef's expressions: exp(l − best) and
  // exp(l/t − best/t).
  const double top = best.value, t = a.temperature[s];
  double z1 = 0, zt = 0;
  for (int64_t id = tid; id < a.vocab; id += kThreads) {
    if (!Allows(mask, id)) continue;
    const double v = __bfloat162float(logits[id]);
    z1 += exp(v - top);
    zt += exp(v / t - top / t);
  }
  z1 = BlockTotal(z1, sum_scratch);
  zt = BlockTotal(zt, sum_scratch);

  // 3. Radix select: the key of the K-th largest allowed logit (K = the entries to keep), 8 bits
  // a pass from the top; sel_greater counts the keys above it.
  const int K = min(a.capacity, allowed);
  if (tid == 0) {
    sel_prefix = 0;
    sel_mask = 0;
    sel_remaining = static_cast<uint32_t>(K);
    sel_greater = 0;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += kThreads) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = sel_prefix, pmask = sel_mask;
    for (int64_t id = tid; id < a.vocab; id += kThreads) {
      if (!Allows(mask, id)) continue;
      const uint32_t key = OrderKey(__bfloat162float(logits[id]));
      if ((key & pmask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      uint32_t above = 0;
      int b = 255;
      for (; b > 0 && above + hist[b] < sel_remaining; --b) above += hist[b];
      sel_greater += above;
      sel_remaining -= above;
      sel_prefix |= static_cast<uint32_t>(b) << shift;
      sel_mask |= 255u << shift;
    }
    __syncthreads();
  }
  const uint32_t kth = sel_prefix;
  const int greater = static_cast<int>(sel_greater), equal_needed = K - greater;

  // 4. Gather: every key above the K-th (any order: sorted next), and the ties at it in id order
  // (SampleRef ranks equal logits by id), a tile of kThreads consecutive ids at a time.
  if (tid == 0) {
    gathered_greater = 0;
    gathered_equal = 0;
  }
  __syncthreads();
  for (int64_t base = 0; base < a.vocab; base += kThreads) {
    const int64_t id = base + tid;
    uint32_t key = 0;
    bool gt = false, eq = false;
    if (id < a.vocab && Allows(mask, id)) {
      key = OrderKey(__bfloat162float(logits[id]));
      gt = key > kth;
      eq = key == kth;
    }
    if (gt) {
      const int slot = atomicAdd(&gathered_greater, 1);
      keys[slot] = key;
      ids[slot] = static_cast<int32_t>(id);
    }
    const uint32_t ballot = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) warp_equal[warp] = __popc(ballot);
    __syncthreads();
    int before = gathered_equal;
    for (int w = 0; w < warp; ++w) before += warp_equal[w];
    before += __popc(ballot & ((1u << lane) - 1u));
    if (eq && before < equal_needed) {
      keys[greater + before] = key;
      ids[greater + before] = static_cast<int32_t>(id);
    }
    __syncthreads();
    if (tid == 0) {
      for (int w = 0; w < kWarps; ++w) gathered_equal += warp_equal[w];
    }
    __syncthreads();
  }
  if (tid >= K) {  // padding: after every real entry
    keys[tid] = 0;
    ids[tid] = INT32_MAX;
  }
  __syncthreads();

  // 5. Bitonic sort, best first: higher key, then lower id.
  auto first = [](uint32_t ka, int32_t ia, uint32_t kb, int32_t ib) {
    return ka > kb || (ka == kb && ia < ib);
  };
  for (int k = 2; k <= kThreads; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      const int partner = tid ^ j;
      if (partner > tid) {
        const bool forward = (tid & k) == 0;
        const uint32_t ka = keys[tid], kb = keys[partner];
        const int32_t ia = ids[tid], ib = ids[partner];
        if (forward ? first(kb, ib, ka, ia) : first(ka, ia, kb, ib)) {
          keys[tid] = kb;
          keys[partner] = ka;
          ids[tid] = ib;
          ids[partner] = ia;
        }
      }
      __syncthreads();
    }
  }

  // 6. Out.
  if (tid < K) {
    a.ids[s * a.capacity + tid] = ids[tid];
    a.values[s * a.capacity + tid] = KeyValue(keys[tid]);
  }
  if (tid == 0) a.out[s] = TopSummary{K, allowed, 0, 0, z1, zt};
}

}  // namespace

Status TopCandidates(const TopCandidatesArgs& a, cudaStream_t stream) {
  if (a.samples < 0 || a.logit_rows < 0 || a.vocab <= 0)
    return BadArgs("TopCandidates", "sizes must be positive");
  if (a.vocab > INT32_MAX - kThreads)
    return BadArgs("TopCandidates", "vocabulary too large for int32 ids");
  if (a.capacity < 1 || a.capacity > kMaxTopCandidates)
    return BadArgs("TopCandidates",
                   "capacity must be in [1, " + std::to_string(kMaxTopCandidates) + "]");
  if (a.samples > kMaxGridRows) return BadArgs("TopCandidates", "too many samples");
  if (a.samples == 0) return Status::Ok();
  if (!a.logits || !a.rows || !a.temperature || !a.ids || !a.values || !a.out)
    return BadArgs("TopCandidates", "null pointer");
  if (a.mask_of && !a.masks) return BadArgs("TopCandidates", "mask indices without masks");
  TopCandidatesKernel<<<static_cast<unsigned>(a.samples), kThreads, 0, stream>>>(a);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

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
