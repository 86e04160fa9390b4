// GeluTanhRef: PyTorch's gelu(approximate="tanh"), 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
// (spec §4, SigLIP's MLP; the decoder's GeGLU gate uses the same function, spec §6.2).
#pragma once

#include <cstdint>

namespace vlmserve {

float GeluTanh(float x);
void GeluTanhRef(const float* x, float* y, int64_t n);  // y may equal x

}  // namespace vlmserve
