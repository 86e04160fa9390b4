// The output allocator handed to the C-style PNG and JPEG decode functions (png_decode.cc,
// jpeg_decode.cc): it grows the caller's std::vector<uint8_t> and reports failure as nullptr, so no
// C++ exception ever unwinds through libpng's or libjpeg's longjmp-based frames.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vlmserve::internal {

inline uint8_t* AllocIntoVector(void* opaque, size_t bytes) {
  try {
    auto* v = static_cast<std::vector<uint8_t>*>(opaque);
    v->resize(bytes);
    return v->data();
  } catch (...) {
    return nullptr;
  }
}

}  // namespace vlmserve::internal
