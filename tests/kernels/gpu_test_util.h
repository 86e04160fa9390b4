// Helpers for GPU tests: skip cleanly (never fail) when no CUDA device is usable, and a small RAII
// device buffer. GPU tests are always compiled in CI; they run on the GPU machine.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#include "kernels/cuda/device.h"

// Skips the test when cudaGetDeviceCount returns any error or no device (no driver, no GPU).
#define SKIP_WITHOUT_GPU()                                          \
  do {                                                              \
    auto vlmserve_count_ = ::vlmserve::CudaDeviceCount();           \
    if (!vlmserve_count_.ok())                                      \
      GTEST_SKIP() << vlmserve_count_.status().message();           \
  } while (0)

namespace vlmserve::testing {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&ptr_, n * sizeof(T) + 1), cudaSuccess);
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() { return ptr_; }
  std::vector<T> ToHost() const {
    std::vector<T> out(n_);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace vlmserve::testing
