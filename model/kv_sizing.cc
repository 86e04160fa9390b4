// KV cache sizing (see kv_sizing.h).
#include "model/kv_sizing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "kernels/kv_layout.h"

namespace vlmserve {

uint64_t KvPageBytes(const Gemma3TextConfig& t, int64_t element_bytes) {
  // Each layer has K and V pages in its kind's pool; both pools have the same page count.
  return static_cast<uint64_t>(t.num_hidden_layers) * 2 * kv::kPageTokens *
         static_cast<uint64_t>(t.num_key_value_heads * t.head_dim * element_bytes);
}

int64_t KvMinTokens(const Gemma3Config& c) {
  return (c.has_vision ? c.mm_tokens_per_image : 0) + 2 * kv::kPageTokens;
}

std::string FormatBytes(uint64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", b / (1024.0 * 1024 * 1024));
  } else if (b >= 1024.0 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", b / (1024.0 * 1024));
  } else if (b >= 1024.0) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  }
  return buf;
}

StatusOr<KvCachePlan> PlanKvCache(const KvSizing& s, uint64_t page_bytes, int64_t min_tokens,
                                  int64_t default_tokens, int64_t max_context,
                                  const KvDeviceMemory* device) {
  if (page_bytes == 0) return InvalidArgumentError("KV cache: a page of this model has no bytes");
  if (s.tokens < 0 || s.bytes < 0) {
    return InvalidArgumentError("--kv-cache-tokens and --kv-cache-bytes must be ≥ 0");
  }
  if (!std::isfinite(s.memory_fraction) || s.memory_fraction < 0 || s.memory_fraction > 1) {
    return InvalidArgumentError("--gpu-memory-fraction must be in (0, 1]");
  }
  constexpr int64_t kMaxPages = int64_t{1} << 30;
  KvCachePlan p;
  if (s.tokens > 0) {
    p.pages = kv::PagesFor(s.tokens);
    p.how = "--kv-cache-tokens " + std::to_string(s.tokens);
  } else if (s.bytes > 0) {
    p.pages = static_cast<int64_t>(static_cast<uint64_t>(s.bytes) / page_bytes);
    p.how = "--kv-cache-bytes " + std::to_string(s.bytes);
  } else if (device && s.memory_fraction > 0) {
    // What the process may hold in all, less what it already holds (weights, CUDA context), less
    // the reserve for everything allocated per step.
    const double allowed = s.memory_fraction * static_cast<double>(device->total);
    const double held = static_cast<double>(device->total - std::min(device->free, device->total));
    const double budget = allowed - held - static_cast<double>(device->reserve);
    const int64_t cap = kv::PagesFor(std::max<int64_t>(max_context, 1)) * 256;
    p.pages = budget <= 0 ? 0
                          : static_cast<int64_t>(std::min<double>(
                                std::floor(budget / static_cast<double>(page_bytes)),
                                static_cast<double>(cap)));
    char f[16];
    std::snprintf(f, sizeof(f), "%.2f", s.memory_fraction);
    p.how = std::string("--gpu-memory-fraction ") + f + " of " + FormatBytes(device->total) +
            " (" + FormatBytes(device->total - std::min(device->free, device->total)) +
            " already in use, " + FormatBytes(device->reserve) + " kept for step buffers)";
    if (p.pages == cap) p.how += ", capped at 256 contexts of " + std::to_string(max_context);
  } else {
    p.pages = kv::PagesFor(default_tokens);
    p.how = "the default, " + std::to_string(default_tokens) + " tokens";
  }
  if (p.pages > kMaxPages) {
    return InvalidArgumentError("KV cache: " + std::to_string(p.pages) + " pages (" + p.how +
                                ") is more than the " + std::to_string(kMaxPages) + " supported");
  }
  if (p.pages * kv::kPageTokens < min_tokens) {
    return ResourceExhaustedError(
        "KV cache: " + p.how + " gives " + std::to_string(p.pages * kv::kPageTokens) +
        " tokens per pool (" + FormatBytes(page_bytes) + " per page of " +
        std::to_string(kv::kPageTokens) + " tokens), fewer than the " +
        std::to_string(min_tokens) + " tokens one request with an image needs; " +
        (device ? "raise --gpu-memory-fraction, --kv-cache-bytes or --kv-cache-tokens, or use a "
                  "GPU with more memory"
                : "raise --kv-cache-bytes or --kv-cache-tokens"));
  }
  p.bytes = static_cast<uint64_t>(p.pages) * page_bytes;
  if (device && p.bytes + device->reserve > device->free) {
    return ResourceExhaustedError("KV cache: " + p.how + " needs " + FormatBytes(p.bytes) +
                                  " plus " + FormatBytes(device->reserve) +
                                  " for step buffers, but only " + FormatBytes(device->free) +
                                  " of device memory is free after the weights");
  }
  return p;
}

}  // namespace vlmserve
