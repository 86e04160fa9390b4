// Embedding kernel (see embedding.h): one block per token walking its row in V-element chunks.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/launch_util.h"

namespace vlmserve::gpu {
namespace {

template <int V>
__global__ void EmbeddingKernel(EmbeddingArgs a) {
  const int64_t t = blockIdx.x;
  if (a.skip && a.skip[t]) return;
  const int32_t id = a.ids[t];
  const bool valid = id >= 0 && id < a.vocab;
  const __nv_bfloat16* row = a.table + (valid ? int64_t{id} * a.dim : 0);
  __nv_bfloat16* y = a.y + t * a.dim;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float v[V];
    LoadBf16<V>(row + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = valid ? v[i] * a.scale : 0.f;
    StoreBf16<V>(y + c, v);
  }
}

}  // namespace

Status Embedding(const EmbeddingArgs& a, cudaStream_t stream) {
  if (!a.table || !a.ids || !a.y) return BadArgs("Embedding", "null pointer");
  if (a.tokens < 0 || a.dim <= 0 || a.vocab <= 0)
    return BadArgs("Embedding", "sizes must be positive");
  if (a.tokens > kMaxGridRows) return BadArgs("Embedding", "too many tokens");
  if (a.tokens == 0) return Status::Ok();
  if (a.dim % 8 == 0 && Aligned16(a.table) && Aligned16(a.y)) {
    EmbeddingKernel<8><<<static_cast<unsigned>(a.tokens), RowThreads(a.dim / 8), 0, stream>>>(a);
  } else {
    EmbeddingKernel<1><<<static_cast<unsigned>(a.tokens), RowThreads(a.dim), 0, stream>>>(a);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
