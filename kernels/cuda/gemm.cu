// cuBLASLt GEMM wrapper (see gemm.h).
//
// Layout: cuBLASLt is column-major. A row-major y[m, n] is a column-major yᵀ[n, m], and
// yᵀ = w · xᵀ where row-major w[n, k] is column-major [k, n] (so op(A) = T) and row-major x[m, k]
// is column-major [k, m] (op(B) = N). Hence: A = w, B = x, cuBLAS dims (m', n', k') = (n, m, k).
#include <cublasLt.h>

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

StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(int64_t m, int64_t n, int64_t k) {
  auto key = std::make_tuple(m, n, k);
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();

  auto plan = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                              sizeof(trans_a)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                              sizeof(trans_b)));
  // A = w as column-major [k, n]; B = x as column-major [k, m]; C = D = y as column-major [n, m].
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, k, n, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, k, m, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_16BF, n, m, n));

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = workspace_bytes_;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
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
  ASSIGN_OR_RETURN(Plan * plan, GetPlan(args.m, args.n, args.k));
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasLtMatmul(H(handle_), plan->op, &alpha, args.w, plan->a, args.x, plan->b, &beta,
                              args.y, plan->c, args.y, plan->c, &plan->algo, workspace_,
                              workspace_bytes_, stream));
  return Status::Ok();
}

}  // namespace vlmserve
