// KvWrite: a step's new keys and values into the paged KV pools (kernels/kv_layout.h). Token t's
// [hkv, hd] rows of K and V go to pool slot slots[t] (= page · kPageTokens + slot in page, worked
// out on the host from the row's block table); a slot of −1 skips the token. Plain copies: the
// pools hold bf16 as the projections produced them. NOT YET RUN ON A GPU (written in a CPU
// session; the CPU runner does the same with std::copy_n in model/reference/decoder.cc).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct KvWriteArgs {
  const __nv_bfloat16* k = nullptr;  // [tokens, hkv · hd] (token_stride between tokens)
  const __nv_bfloat16* v = nullptr;
  __nv_bfloat16* k_pool = nullptr;  // [pages, kPageTokens, hkv, hd]
  __nv_bfloat16* v_pool = nullptr;
  const int32_t* slots = nullptr;  // [tokens] (device)
  int64_t tokens = 0, hkv = 0, hd = 0;
  int64_t token_stride = 0;  // 0 = hkv · hd
  int64_t pool_slots = 0;    // pages · kPageTokens: slots past it are refused on the host
};
Status KvWrite(const KvWriteArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
