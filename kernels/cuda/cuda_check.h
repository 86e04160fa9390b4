// CUDA_CHECK / CUBLAS_CHECK: turn a CUDA runtime or cuBLAS(Lt) error into a Status naming the
// expression, the error and the file:line, and return it from the enclosing function. Launchers use
// CUDA_CHECK(cudaGetLastError()) after every launch and never synchronize.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "common/status.h"

namespace vlmserve {

inline Status CudaError(cudaError_t err, const char* expr, const char* file, int line) {
  return InternalError(std::string(expr) + " failed: " + cudaGetErrorName(err) + " (" +
                       cudaGetErrorString(err) + ") at " + file + ":" + std::to_string(line));
}

inline Status CublasError(cublasStatus_t st, const char* expr, const char* file, int line) {
  return InternalError(std::string(expr) + " failed: " + cublasLtGetStatusName(st) + " (" +
                       cublasLtGetStatusString(st) + ") at " + file + ":" + std::to_string(line));
}

}  // namespace vlmserve

#define CUDA_CHECK(expr)                                                      \
  do {                                                                        \
    cudaError_t vlmserve_err_ = (expr);                                       \
    if (vlmserve_err_ != cudaSuccess)                                         \
      return ::vlmserve::CudaError(vlmserve_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                     \
  do {                                                                         \
    cublasStatus_t vlmserve_st_ = (expr);                                      \
    if (vlmserve_st_ != CUBLAS_STATUS_SUCCESS)                                 \
      return ::vlmserve::CublasError(vlmserve_st_, #expr, __FILE__, __LINE__); \
  } while (0)
