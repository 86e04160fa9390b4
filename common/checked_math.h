// Overflow-checked integer arithmetic for sizes that come from untrusted input (config.json,
// safetensors headers, image headers): every product that sizes a buffer goes through these.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>

namespace vlmserve {

// a * b, or nullopt when the product does not fit in 64 bits.
inline std::optional<uint64_t> CheckedMul(uint64_t a, uint64_t b) {
  uint64_t out;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

// a + b, or nullopt on overflow.
inline std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  uint64_t out;
  if (__builtin_add_overflow(a, b, &out)) return std::nullopt;
  return out;
}

// The product of all factors, or nullopt on overflow.
inline std::optional<uint64_t> CheckedProduct(std::initializer_list<uint64_t> factors) {
  uint64_t acc = 1;
  for (uint64_t f : factors) {
    auto next = CheckedMul(acc, f);
    if (!next) return std::nullopt;
    acc = *next;
  }
  return acc;
}

}  // namespace vlmserve
