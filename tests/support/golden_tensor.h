// Reading a float32 tensor out of a goldens.safetensors file written by tools/golden or tools/demo.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "model/weights/safetensors.h"

namespace vlmserve::testing {

// The tensor's values (a test failure, and {}, when it is missing or not float32); its shape
// into `shape` when given.
inline std::vector<float> GoldenTensor(const SafetensorsFile& f, const std::string& name,
                                       std::vector<int64_t>* shape = nullptr) {
  for (const TensorEntry& t : f.header().tensors) {
    if (t.name != name) continue;
    EXPECT_EQ(t.dtype, DType::kF32) << name;
    if (t.dtype != DType::kF32) return {};
    if (shape) *shape = t.shape;
    std::vector<float> out(t.numel());
    std::memcpy(out.data(), f.Data(t).data(), t.nbytes());
    return out;
  }
  ADD_FAILURE() << "no tensor " << name;
  return {};
}

}  // namespace vlmserve::testing
