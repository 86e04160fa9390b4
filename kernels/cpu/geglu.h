// GegluRef: the Gemma MLP's gate, y = gelu_tanh(gate) ⊙ up (spec §6.2), elementwise in fp32.
#pragma once

#include <cstdint>

namespace vlmserve {

void GegluRef(const float* gate, const float* up, float* y, int64_t n);  // y may alias gate

}  // namespace vlmserve
