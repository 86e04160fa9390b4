// Widening stored weights (BF16, F16, F32, little-endian, possibly unaligned inside the mapped
// file) to fp32 for the CPU reference runner. Exact: every bf16 and fp16 value is an fp32 value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/weights/checkpoint.h"

namespace vlmserve {

float HalfBitsToFloat(uint16_t h);  // IEEE binary16 → binary32, subnormals, inf and NaN included
std::vector<float> WeightToFloat(const Weight& w);
// The checkpoint's tensor `name` (internal name) widened; INTERNAL if it is missing, which
// Checkpoint::Open's validation rules out.
StatusOr<std::vector<float>> TensorToFloat(const Checkpoint& ck, const std::string& name);

}  // namespace vlmserve
