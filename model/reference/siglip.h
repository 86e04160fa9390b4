// SiglipVisionTower: Gemma 3's SigLIP encoder (spec §4) in fp32 on the CPU — the reference every
// CUDA kernel is checked against, so it is written plainly, op by op (kernels/cpu/):
//   patch embedding + position table → L × [x += attn(LN1(x)); x += fc2(gelu(fc1(LN2(x))))]
//   → post_layernorm.
// Images are processed one at a time, so an image's output never depends on its batch.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "model/weights/checkpoint.h"
#include "model/weights/config.h"

namespace vlmserve {

class SiglipVisionTower {
 public:
  // Widens the vision tensors of `ck` (validated against `config`) to fp32.
  static StatusOr<SiglipVisionTower> Load(const Checkpoint& ck, const Gemma3Config& config);

  // pixel_values [n, 3, S, S] → last_hidden_state [n, P, d], P = (S / patch)².
  StatusOr<std::vector<float>> Forward(std::span<const float> pixel_values, int64_t n) const;

  const SiglipVisionConfig& config() const { return cfg_; }

 private:
  struct Layer {
    std::vector<float> ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
    std::vector<float> ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  };
  void ForwardOne(const float* pixels, float* out) const;  // one image

  SiglipVisionConfig cfg_;
  std::vector<float> patch_w_, patch_b_, pos_, post_w_, post_b_;
  std::vector<Layer> layers_;
};

}  // namespace vlmserve
