// Attention on the device — the generic path, simply correct for any even head_dim ≤ 256 (the
// tiny test models use 12–40, Gemma 3 uses 72 for vision and 256 for the decoder), and fast paths
// dispatched from the same launchers (NOT YET RUN ON A GPU, issue 24):
//   DenseAttention at head_dim 72 on tensor cores (attention_vision72.cu, sm_80+);
//   PagedAttention with a plan (kernels/attention_plan.h; attention_paged.cu): flash-decoding for
//   short rows (any head_dim that is a multiple of 8), the head_dim-256 tensor-core prefill for
//   long ones (sm_80+), and the exact merge of split contexts.
//
//   PagedAttention  the decoder's attention for one Step: rows of prefill chunks and decode runs
//                   (any number of query tokens per row) of different sequences, K/V read
//                   through each row's block table from the paged pools (kernels/kv_layout.h),
//                   GQA (query head h reads kv head h / (hq / hkv)), the mask of
//                   kv::AttendAllowed — causal, the sliding window on local layers, bidirectional
//                   inside an image's soft tokens (block ids of the row's own tokens; keys before
//                   the row are text, as a chunk never splits an image).
//   DenseAttention  the vision tower's: bidirectional over each image's tokens, a batch of images.
//
// One warp per (query token, query head): the lanes hold the query's dimensions (d = lane,
// lane + 32, …), each key's dot product is a warp reduction, the softmax is online (running max
// and sum) and the weighted sum of V accumulates in fp32; the output is rounded to bf16 once. A
// query with no allowed key writes zeros (as the CPU reference). The reference is
// kernels/cpu/attention (PagedAttentionRef, AttentionRef). NOT YET RUN ON A GPU (written in a CPU
// session; tests/kernels/cuda_attention_test.cc checks it against the reference on the GPU).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/attention_plan.h"

namespace vlmserve::gpu {

// A plan (kernels/attention_plan.h) as the device sees it: its arrays uploaded as they are, and
// fp32 workspace for its partials (at least attn::PlanWorkspaceBytes).
struct PagedAttentionPlanView {
  const attn::WorkItem* decode = nullptr;  // device
  int64_t decode_items = 0;
  const attn::WorkItem* prefill = nullptr;  // device
  int64_t prefill_items = 0;
  const attn::MergeItem* merges = nullptr;  // device
  int64_t merge_items = 0;
  int64_t heads_per_cta = 1;
  int64_t query_vectors = 0;  // the plan's: the decode kernel's register arrays are sized by it
  int64_t parts = 0;
  float* workspace = nullptr;  // device, parts × hq × (head_dim + 2) floats
};

struct PagedAttentionArgs {
  const __nv_bfloat16* q = nullptr;  // [tokens, hq, hd]: every row's tokens, row after row
  const __nv_bfloat16* k_pool = nullptr;  // [pages, kPageTokens, hkv, hd]
  const __nv_bfloat16* v_pool = nullptr;  // [pages, kPageTokens, hkv, hd]
  __nv_bfloat16* o = nullptr;             // [tokens, hq, hd]
  const int32_t* row_tokens = nullptr;    // [rows + 1] (device): row r owns tokens [t[r], t[r+1])
  const int32_t* row_start = nullptr;     // [rows] (device): position of row r's first token
  const int32_t* block_tables = nullptr;  // [rows, table_stride] (device)
  const int32_t* token_blocks = nullptr;  // [tokens] image block per token (-1 text); null = text
  int64_t table_stride = 0;
  int64_t rows = 0, tokens = 0, hq = 0, hkv = 0, hd = 0;
  float scale = 1.0f;
  bool sliding = false;
  int64_t window = 0;
  // Host pointer to the step's plan for this layer kind (built with the same rows, hq, hkv,
  // sliding and window), or null: the generic kernel. With a plan the fast kernels run unless
  // VLMSERVE_ATTENTION=generic or the head_dim is not a multiple of 8.
  const PagedAttentionPlanView* plan = nullptr;
};
Status PagedAttention(const PagedAttentionArgs& args, cudaStream_t stream);

// What PlanPagedAttention's options should say on this device: whether the head_dim-256
// tensor-core prefill can run (sm_80+), and how many CTAs fill the GPU (2 per SM).
bool PagedTensorCorePrefillSupported(int64_t head_dim);
int64_t PagedDecodeTargetCtas();

// Which kernel DenseAttention runs. kAuto: the fast path when it supports the arguments
// (attention_vision72.h), else the generic one — unless the environment variable
// VLMSERVE_ATTENTION=generic forces the generic path (to bisect a suspected kernel on a GPU).
// kGeneric / kFast force one (kFast: INVALID_ARGUMENT where it cannot run); tests and benchmarks
// compare them.
enum class AttentionPath { kAuto, kGeneric, kFast };

struct DenseAttentionArgs {
  const __nv_bfloat16* q = nullptr;  // [images, n, heads, hd] (token_stride between tokens)
  const __nv_bfloat16* k = nullptr;
  const __nv_bfloat16* v = nullptr;
  __nv_bfloat16* o = nullptr;  // [images, n, heads, hd] (heads · hd between tokens)
  int64_t images = 0, n = 0, heads = 0, hd = 0;
  int64_t token_stride = 0;  // elements between tokens of q, k, v; 0 = heads · hd (a fused qkv: 3×)
  float scale = 1.0f;
  AttentionPath path = AttentionPath::kAuto;
};
Status DenseAttention(const DenseAttentionArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
