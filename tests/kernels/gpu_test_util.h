// Helpers for GPU tests: skip cleanly (never fail) when no CUDA device is usable, and a small RAII
// device buffer. GPU tests are always compiled in CI; they run on the GPU machine.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"

// Skips the test when cudaGetDeviceCount returns any error or no device (no driver, no GPU).
#define SKIP_WITHOUT_GPU()                                                         \
  do {                                                                             \
    auto vlmserve_count_ = ::vlmserve::CudaDeviceCount();                          \
    if (!vlmserve_count_.ok()) GTEST_SKIP() << vlmserve_count_.status().message(); \
  } while (0)

namespace vlmserve::testing {

// VLMSERVE_GPU_SMALL=1: tests with large shapes keep only the small ones (scripts/gpu/check.sh sets
// it for compute-sanitizer's racecheck, which is too slow for N = 4096 images within its cap).
inline bool SmallShapesOnly() {
  const char* e = std::getenv("VLMSERVE_GPU_SMALL");
  return e != nullptr && e[0] == '1';
}

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

inline std::vector<__nv_bfloat16> ToBf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16_rn(v[i]);
  return out;
}

inline std::vector<float> FromBf16(const std::vector<__nv_bfloat16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(v[i]);
  return out;
}

// The tolerance rule of the CUDA op tests (issue 11): against the exact result `ref` (the
// fp32/double CPU reference on the same bf16 inputs), the kernel's worst error may be at most twice
// the worst error of `flow` — the same op computed as transformers does it in bf16 (spec §6.6:
// which values are rounded to bf16, and where). A kernel that reads a wrong index or forgets a term
// misses by far more. On failure it prints the kernel's worst element and the flow's.
inline void ExpectWithinTwiceBf16Flow(const std::string& what, const std::vector<float>& got,
                                      const std::vector<float>& ref,
                                      const std::vector<float>& flow) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  ASSERT_EQ(flow.size(), ref.size()) << what;
  double worst_got = 0, worst_flow = 0;
  size_t at_got = 0, at_flow = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double eg = std::fabs(double(got[i]) - ref[i]), ef = std::fabs(double(flow[i]) - ref[i]);
    if (!(eg <= worst_got)) worst_got = eg, at_got = i;  // NaN counts as worst
    if (ef > worst_flow) worst_flow = ef, at_flow = i;
  }
  EXPECT_LE(worst_got, 2 * worst_flow)
      << what << ": worst kernel error " << worst_got << " at [" << at_got << "]: expected "
      << ref[at_got] << ", got " << got[at_got] << " (bf16 flow there: " << flow[at_got]
      << "); the bf16 flow's worst error is " << worst_flow << " at [" << at_flow << "]";
}

}  // namespace vlmserve::testing
