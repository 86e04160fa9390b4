// AxpyRef: y ← a·x + y in fp32. The reference for the trivial CUDA smoke kernel (kernels/cuda/axpy),
// which exists to prove that a kernel compiles, launches and returns the right numbers on the GPU.
#pragma once

#include <cstdint>

namespace vlmserve {

struct AxpyArgs {
  float a = 0.f;
  const float* x = nullptr;  // [n]
  float* y = nullptr;        // [n], updated in place
  int64_t n = 0;
};

void AxpyRef(const AxpyArgs& args);

}  // namespace vlmserve
