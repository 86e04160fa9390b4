// RoPE, rotate-half layout (spec §6.4), the way transformers computes it in fp32:
//   inv_freq[i] = 1 / base^(float32(2i) / head_dim) / factor   (factor 1 unless linear scaling)
//   θ = float32(position) · inv_freq[i];  cos/sin of [θ, θ] (head_dim entries) in fp32
//   rot(x)[i] = x[i]·cos_i − x[i+half]·sin_i,  rot(x)[i+half] = x[i+half]·cos_i + x[i]·sin_i.
// Each layer type has its own base and factor (global: 1e6, linear ×8 in Gemma 3 4B; local: 1e4).
#pragma once

#include <cstdint>
#include <vector>

namespace vlmserve {

// inv_freq for one layer type: head_dim / 2 entries.
std::vector<float> RopeInvFreq(int64_t head_dim, double base, double linear_factor);

struct RopeArgs {
  float* x = nullptr;              // [tokens, heads, head_dim], rotated in place
  const int64_t* positions = nullptr;  // [tokens]
  const float* inv_freq = nullptr;     // [head_dim / 2]
  int64_t tokens = 0, heads = 0, head_dim = 0;
};

void RopeRef(const RopeArgs& args);

}  // namespace vlmserve
