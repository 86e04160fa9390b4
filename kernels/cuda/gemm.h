// Gemm: the one cuBLASLt wrapper every GEMM of the model goes through (design.md §5).
// bf16 inputs, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16 output; y = x · wᵀ (+ bias) (+ add)
// with the weight in nn.Linear layout. The bias (cuBLASLt's BIAS epilogue) and the addend (beta =
// 1, C = add: a residual stream or the position embeddings) are summed in fp32 with the product and
// rounded to bf16 once. The algorithm is chosen once per (m, n, k, bias, pointer alignment) by
// cuBLASLt's heuristic, told the real alignment of the buffers (sub-buffers such as one image's
// rows need not be 256-byte aligned, which the heuristic otherwise assumes), and cached. Not yet:
// timing-based algorithm choice, split-K for small-M prefill GEMMs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "common/status.h"

namespace vlmserve {

struct GemmArgs {
  const __nv_bfloat16* x = nullptr;  // [m, k] row-major activations (device)
  const __nv_bfloat16* w = nullptr;  // [n, k] row-major weight, out_features × in_features (device)
  __nv_bfloat16* y = nullptr;  // [m, n] row-major output (device), y = x · wᵀ (+ bias) (+ add)
  int64_t m = 0, n = 0, k = 0;
  const __nv_bfloat16* bias = nullptr;  // [n] or null
  const __nv_bfloat16* add = nullptr;  // [m, n] row-major, or null; may equal y (in-place residual)
};

// Owns a cuBLASLt handle, a workspace and the per-shape plan cache. Not thread-safe: one instance
// per stream owner (the engine thread), never a global.
class CublasLtGemm {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;  // what Hopper kernels want

  // Fails with UNAVAILABLE/INTERNAL when there is no device or cuBLASLt cannot start.
  static StatusOr<std::unique_ptr<CublasLtGemm>> Create(
      size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Enqueues y = x · wᵀ (+ bias) (+ add) on `stream`; does not synchronize.
  Status Run(const GemmArgs& args, cudaStream_t stream);

  // Number of cached shape plans (tests check that the cache is used).
  size_t CachedPlans() const { return plans_.size(); }

 private:
  struct Plan;  // descriptors + chosen algorithm for one shape (gemm.cu)
  CublasLtGemm() = default;
  StatusOr<Plan*> GetPlan(int64_t m, int64_t n, int64_t k, bool bias, uint32_t alignment);

  void* handle_ = nullptr;  // cublasLtHandle_t (kept opaque so users need not include cublasLt.h)
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t, bool, uint32_t>, std::unique_ptr<Plan>> plans_;
};

}  // namespace vlmserve
