// How big the KV cache is: one rule for every runner, a pure function (tests/unit/kv_sizing_test).
// The cache is two pools of pages (kernels/kv_layout.h: full and sliding layers), each with the
// same page count; a page holds kPageTokens tokens of K and V in every layer of its kind, so one
// page of capacity costs KvPageBytes for the whole model.
//
// In order of precedence (the first that is set decides):
//   --kv-cache-tokens N      pages for N tokens per pool
//   --kv-cache-bytes B       as many pages as fit in B bytes
//   --gpu-memory-fraction F  on a GPU: the pages that fit in F × the device's memory, less what
//                            is in use once the weights are loaded (weights, CUDA context, any
//                            other process) and `reserve` bytes kept for step buffers, image
//                            batches and the GEMM workspace — capped at 256 full-length contexts
//   otherwise                pages for `default_tokens`
// Errors: a cache that cannot hold `min_tokens` (one image and a short prompt) — with what the
// weights left and the flags to change — and, on a GPU, a cache larger than the free memory.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "model/weights/config.h"

namespace vlmserve {

struct KvSizing {
  int64_t tokens = 0;          // --kv-cache-tokens; 0 = unset
  int64_t bytes = 0;           // --kv-cache-bytes; 0 = unset
  double memory_fraction = 0;  // --gpu-memory-fraction; 0 = unset (ignored without a device)
};

// A device's memory after the weights were uploaded (cudaMemGetInfo), and what to leave free.
struct KvDeviceMemory {
  uint64_t total = 0, free = 0, reserve = 0;
};

struct KvCachePlan {
  int64_t pages = 0;   // per pool
  uint64_t bytes = 0;  // pages × page_bytes
  std::string how;     // for the start-up log: which setting decided, and from what
};

// Bytes of one page across every layer (K and V) at `element_bytes` per value (4: fp32, 2: bf16).
uint64_t KvPageBytes(const Gemma3TextConfig& text, int64_t element_bytes);

// `device` null: no device memory to size from (the CPU runner); memory_fraction is ignored.
// `max_context`: the model's max_position_embeddings (for the fraction's cap).
StatusOr<KvCachePlan> PlanKvCache(const KvSizing& sizing, uint64_t page_bytes, int64_t min_tokens,
                                  int64_t default_tokens, int64_t max_context,
                                  const KvDeviceMemory* device);

// The smallest useful cache: one image's soft tokens and two pages of text.
int64_t KvMinTokens(const Gemma3Config& config);

// "1.50 GiB", "12.0 MiB", "800 B": sizes in start-up logs.
std::string FormatBytes(uint64_t bytes);

}  // namespace vlmserve
