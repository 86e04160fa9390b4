// Shared by the CUDA benchmarks: the timing method of performance.md — warm-up, the L2 flushed
// before every timed repeat, each repeat timed alone with CUDA events, the lower median reported
// (as the PyTorch baselines do) — and a CUDA error check that exits.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>
#include <vector>

#include "common/status.h"

#define BENCH_CHECK_CUDA(x)                                               \
  do {                                                                    \
    cudaError_t e = (x);                                                  \
    if (e != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e)); \
      std::exit(1);                                                       \
    }                                                                     \
  } while (0)

namespace vlmserve::bench {

class CudaTimer {
 public:
  explicit CudaTimer(int repeats) : repeats_(repeats) {
    BENCH_CHECK_CUDA(cudaMalloc(&flush_, kFlushBytes));
    BENCH_CHECK_CUDA(cudaEventCreate(&start_));
    BENCH_CHECK_CUDA(cudaEventCreate(&stop_));
  }
  ~CudaTimer() {
    cudaFree(flush_);
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  CudaTimer(const CudaTimer&) = delete;
  CudaTimer& operator=(const CudaTimer&) = delete;

  int repeats() const { return repeats_; }

  // {median, min} in microseconds of `op` on the default stream; exits on an error from `op`.
  std::pair<double, double> Time(const char* name, const std::function<Status()>& op) {
    for (int i = 0; i < 3; ++i) {  // warm-up (also builds and caches GEMM plans)
      Status st = op();
      if (!st.ok()) {
        std::fprintf(stderr, "%s: %s\n", name, st.ToString().c_str());
        std::exit(1);
      }
    }
    std::vector<float> ms;
    for (int r = 0; r < repeats_; ++r) {
      BENCH_CHECK_CUDA(cudaMemsetAsync(flush_, r & 0xff, kFlushBytes, nullptr));
      BENCH_CHECK_CUDA(cudaEventRecord(start_, nullptr));
      (void)op();
      BENCH_CHECK_CUDA(cudaEventRecord(stop_, nullptr));
      BENCH_CHECK_CUDA(cudaEventSynchronize(stop_));
      float t = 0;
      BENCH_CHECK_CUDA(cudaEventElapsedTime(&t, start_, stop_));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return {ms[(ms.size() - 1) / 2] * 1e3, ms.front() * 1e3};
  }

 private:
  static constexpr size_t kFlushBytes = size_t{256}
                                        << 20;  // larger than any L2 (H100 50 MB, H200 60 MB)
  int repeats_;
  void* flush_ = nullptr;
  cudaEvent_t start_{}, stop_{};
};

}  // namespace vlmserve::bench
