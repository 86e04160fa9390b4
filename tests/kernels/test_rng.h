// A project-owned seeded RNG for test data (splitmix64): the same numbers on every compiler and
// standard library, unlike std::normal_distribution (style.md).
#pragma once

#include <cstdint>
#include <vector>

namespace vlmserve::testing {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float UniformFloat() { return static_cast<float>((Next() >> 40) * 0x1.0p-24 * 2.0 - 1.0); }
  std::vector<float> Uniform(int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& f : v) f = UniformFloat();
    return v;
  }
  // Integers in [-r, r] (exactly representable; used for exact GEMM checks).
  std::vector<float> SmallInts(int64_t n, int r) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& f : v) f = static_cast<float>(static_cast<int>(Next() % (2 * r + 1)) - r);
    return v;
  }

 private:
  uint64_t state_;
};

}  // namespace vlmserve::testing
