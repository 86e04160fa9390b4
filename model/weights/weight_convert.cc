// Weight widening (see weight_convert.h).
#include "model/weights/weight_convert.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/bf16.h"

namespace vlmserve {

float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(mant), -24);  // zero and subnormals
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

std::vector<float> WeightToFloat(const Weight& w) {
  const size_t n = w.numel();
  std::vector<float> out(n);
  const uint8_t* p = w.data.data();
  switch (w.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), p, n * 4);
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        out[i] = Bf16BitsToFloat(b);
      }
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        out[i] = HalfBitsToFloat(b);
      }
      break;
  }
  return out;
}

StatusOr<std::vector<float>> TensorToFloat(const Checkpoint& ck, const std::string& name) {
  const Weight* w = ck.Find(name);
  if (!w) return InternalError("checkpoint has no " + name + " although it was validated");
  return WeightToFloat(*w);
}

}  // namespace vlmserve
