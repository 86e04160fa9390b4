// SHA-256 (FIPS 180-4), for comparing large outputs with goldens by digest: token id sequences of
// long texts, resized image buffers. Not for anything security-related.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace vlmserve {

class Sha256 {
 public:
  Sha256();
  void Update(std::string_view data);
  std::array<uint8_t, 32> Finish();  // the object is spent afterwards
  static std::string Hex(std::string_view data);  // lowercase hex digest of `data`

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

}  // namespace vlmserve
