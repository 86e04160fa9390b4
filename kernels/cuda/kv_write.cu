// KvWrite kernel (see kv_write.h): one block per token, threads over its hkv · hd elements.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kv_write.h"
#include "kernels/cuda/launch_util.h"

namespace vlmserve::gpu {
namespace {

__global__ void KvWriteKernel(KvWriteArgs a) {
  const int64_t t = blockIdx.x;
  const int32_t slot = a.slots[t];
  if (slot < 0) return;
  const int64_t row = a.hkv * a.hd;
  const int64_t stride = a.token_stride > 0 ? a.token_stride : row;
  const __nv_bfloat16* k = a.k + t * stride;
  const __nv_bfloat16* v = a.v + t * stride;
  __nv_bfloat16* kd = a.k_pool + int64_t{slot} * row;
  __nv_bfloat16* vd = a.v_pool + int64_t{slot} * row;
  for (int64_t i = threadIdx.x; i < row; i += blockDim.x) {
    kd[i] = k[i];
    vd[i] = v[i];
  }
}

}  // namespace

Status KvWrite(const KvWriteArgs& a, cudaStream_t stream) {
  if (!a.k || !a.v || !a.k_pool || !a.v_pool || !a.slots) return BadArgs("KvWrite", "null pointer");
  if (a.tokens < 0 || a.hkv <= 0 || a.hd <= 0) return BadArgs("KvWrite", "bad sizes");
  if (a.token_stride != 0 && a.token_stride < a.hkv * a.hd) {
    return BadArgs("KvWrite", "token_stride is shorter than a token's row");
  }
  if (a.tokens == 0) return Status::Ok();
  if (a.tokens > int64_t{1} << 31) return BadArgs("KvWrite", "too many tokens for one launch");
  KvWriteKernel<<<static_cast<unsigned>(a.tokens), 128, 0, stream>>>(a);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
