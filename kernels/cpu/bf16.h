// bfloat16 on the host: round-to-nearest-even conversion from fp32 and exact widening back.
// Used by CPU references to emulate the rounding the CUDA kernels (and HF bf16 inference, spec §0.1)
// perform, and by tests to build bf16 inputs bit-for-bit.
#pragma once

#include <cstdint>
#include <cstring>

namespace vlmserve {

// Bits of the bf16 nearest to `f` (ties to even); NaN stays a (quiet) NaN.
inline uint16_t FloatToBf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16BitsToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// fp32 -> bf16 -> fp32: the value a bf16 tensor would hold.
inline float RoundToBf16(float f) { return Bf16BitsToFloat(FloatToBf16Bits(f)); }

}  // namespace vlmserve
