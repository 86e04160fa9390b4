// LayerNormRef: y = (x − mean) / sqrt(var + eps) · w + b over the last dimension, biased variance
// (SigLIP's layer_norm1/2 and post_layernorm, spec §4). Mean and variance are accumulated in
// double: the oracle is at least as accurate as PyTorch's fp32 kernel.
#pragma once

#include <cstdint>

namespace vlmserve {

struct LayerNormArgs {
  const float* x = nullptr;  // [rows, dim]
  const float* w = nullptr;  // [dim]
  const float* b = nullptr;  // [dim] or null
  float* y = nullptr;        // [rows, dim]; may equal x
  int64_t rows = 0, dim = 0;
  float eps = 1e-6f;
};

void LayerNormRef(const LayerNormArgs& args);

}  // namespace vlmserve
