// cuBLASLt GEMM wrapper (see gemm.h).
//
// Layout: cuBLASLt is column-major. A row-major y[m, n] is a column-major yᵀ[n, m], and
// yᵀ = w · xᵀ where row-major w[n, k] is column-major [k, n] (so op(A) = T) and row-major x[m, k]
// is column-major [k, m] (op(B) = N). Hence: A = w, B = x, cuBLAS dims (m', n', k') = (n, m, k).
#include <cublasLt.h>

#include <initializer_list>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm.h"

namespace vlmserve {

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

namespace {
cublasLtHandle_t H(void* p) { return static_cast<cublasLtHandle_t>(p); }

// The largest power of two ≤ 256 dividing every address.
uint32_t Alignment(std::initializer_list<const void*> ptrs) {
  uintptr_t bits = 256;
  for (const void* p : ptrs)
    if (p) bits |= reinterpret_cast<uintptr_t>(p);
  return static_cast<uint32_t>(bits & (~bits + 1));
}
}  // namespace

StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(size_t workspace_bytes) {
  std::unique_ptr<CublasLtGemm> g(new CublasLtGemm());
  cublasLtHandle_t handle = nullptr;
  CUBLAS_CHECK(cublasLtCreate(&handle));
  g->handle_ = handle;
  if (workspace_bytes > 0) CUDA_CHECK(cudaMalloc(&g->workspace_, workspace_bytes));
  g->workspace_bytes_ = workspace_bytes;
  return StatusOr<std::unique_ptr<CublasLtGemm>>(std::move(g));
}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(H(handle_));
}

StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(int64_t m, int64_t n, int64_t k, bool bias,
                                                    uint32_t alignment) {
  auto key = std::make_tuple(m, n, k, bias, alignment);
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();

  auto plan = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                              sizeof(trans_a)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                              sizeof(trans_b)));
  if (bias) {
    // cuBLASLt's bias has one entry per row of its column-major D = yᵀ [n, m]: per output feature.
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_16BF;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof(epilogue)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                &bias_type, sizeof(bias_type)));
  }
  // A = w as column-major [k, n]; B = x as column-major [k, m]; C = D = y as column-major [n, m].
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, k, n, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, k, m, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_16BF, n, m, n));

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = workspace_bytes_;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &alignment, sizeof(alignment));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(H(handle_), plan->op, plan->a, plan->b, plan->c, plan->c,
                                        pref, 1, &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  CUBLAS_CHECK(st);
  if (found == 0) {
    return InternalError("cuBLASLt found no algorithm for bf16 GEMM m=" + std::to_string(m) +
                         " n=" + std::to_string(n) + " k=" + std::to_string(k));
  }
  plan->algo = result.algo;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

Status CublasLtGemm::Run(const GemmArgs& args, cudaStream_t stream) {
  if (args.m <= 0 || args.n <= 0 || args.k <= 0) {
    return InvalidArgumentError("Gemm: sizes must be positive, got m=" + std::to_string(args.m) +
                                " n=" + std::to_string(args.n) + " k=" + std::to_string(args.k));
  }
  if (!args.x || !args.w || !args.y) return InvalidArgumentError("Gemm: null pointer");
  ASSIGN_OR_RETURN(Plan * plan, GetPlan(args.m, args.n, args.k, args.bias != nullptr,
                                        Alignment({args.x, args.w, args.y, args.add, args.bias})));
  if (args.bias) {
    // The pointer is a descriptor attribute: set per call (one instance per stream owner).
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &args.bias, sizeof(args.bias)));
  }
  // D = alpha · (w · x) + beta · C (+ bias): with an addend, C = add and beta = 1; C may equal D.
  const float alpha = 1.f, beta = args.add ? 1.f : 0.f;
  const void* c = args.add ? static_cast<const void*>(args.add) : static_cast<const void*>(args.y);
  CUBLAS_CHECK(cublasLtMatmul(H(handle_), plan->op, &alpha, args.w, plan->a, args.x, plan->b, &beta,
                              c, plan->c, args.y, plan->c, &plan->algo, workspace_,
                              workspace_bytes_, stream));
  return Status::Ok();
}

}  // namespace vlmserve
