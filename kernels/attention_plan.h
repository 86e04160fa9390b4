// How one Step's paged attention is cut into work for the fast CUDA kernels (issue 24): a pure
// host function of the step's rows, planned once per step and layer kind (full or sliding; every
// layer of a kind has the same rows and key ranges), uploaded with the step's inputs and read by
// every layer's launch — FlashInfer's plan/run split, so no layer pays for it.
//
//   decode items   rows of at most kDecodeMaxTokens tokens (decode steps, forced runs of jump-
//                  forward) — or every row where the tensor-core prefill cannot run. A CTA takes
//                  up to kMaxQueryVectors query vectors: `heads_per_cta` query heads of one KV
//                  head (GQA heads share each K/V read) × q_count tokens. Long contexts are split
//                  over the keys (flash-decoding) so the launch fills the GPU: each split writes a
//                  partial (m, l, acc) and a merge item combines them exactly (softmax_merge.h).
//   prefill items  64-token query tiles of longer rows for the head_dim-256 tensor-core kernel
//                  (one CTA per tile and query head; the tiles and heads give the parallelism).
//
// Every item carries its key range: from the first key its first query may read (0, or the
// window's start on sliding layers) to one past its last query — or to the row's end when one of
// its queries is an image token (bidirectional inside the image, which a chunk never splits).
// The kernels mask every key with kv::AttendAllowed inside that range, so the range only has to
// cover the allowed keys (tests/kernels/attention_plan_test.cc checks that it does, and runs the
// plan through a CPU emulation against PagedAttentionRef).
#pragma once

#include <cstdint>
#include <vector>

namespace vlmserve::attn {

inline constexpr int kMaxQueryVectors = 8;     // decode kernel: query vectors per CTA (registers)
inline constexpr int kPrefillTileTokens = 64;  // tensor-core kernel: query tokens per CTA
inline constexpr int kDecodeMaxTokens = 16;    // longer rows go to the prefill kernel when it can

// One row of a step (a prefill chunk or a decode run of one sequence).
struct RowDesc {
  int64_t first_token = 0;  // its first token's index in the step's token list
  int64_t tokens = 0;       // tokens in the row
  int64_t start = 0;        // position of its first token in the sequence
};

struct PlanOptions {
  int64_t hq = 0, hkv = 0;
  bool sliding = false;
  int64_t window = 0;
  bool tensor_core_prefill = false;  // the head_dim-256 prefill kernel can run (sm_80+, hd 256)
  int64_t target_ctas = 264;         // decode CTAs to aim for (2 per SM of an H100/H200)
  int64_t min_split_keys = 256;      // keys per split at least (a multiple of 16: whole pages)
  int64_t max_splits = 32;
};

// One CTA's work, 32 bytes of int32 so the plan uploads as it is.
struct WorkItem {
  int32_t row = 0;
  int32_t q_begin = 0, q_count = 0;  // the row's tokens [q_begin, q_begin + q_count) (row-relative)
  int32_t k_begin = 0, k_end = 0;    // key positions [k_begin, k_end) it reads (then masks)
  int32_t part = -1;    // -1: writes the output; else the partial slot of its first token
  int32_t splits = 1;   // slots of token j are part + j · splits (this split's slot of token j)
  int32_t pad = 0;
};
static_assert(sizeof(WorkItem) == 32, "uploaded as raw int32");

// One query token whose decode item was split: its `parts` partials sit in consecutive slots.
struct MergeItem {
  int32_t token = 0;  // index in the step's token list
  int32_t first_part = 0;
  int32_t parts = 0;
  int32_t pad = 0;
};
static_assert(sizeof(MergeItem) == 16, "uploaded as raw int32");

struct AttentionPlan {
  int64_t heads_per_cta = 1;  // decode: query heads per CTA (a divisor of hq / hkv)
  int64_t query_vectors = 0;  // decode: the most query vectors (q_count × heads_per_cta) of an item
  std::vector<WorkItem> decode, prefill;
  std::vector<MergeItem> merges;
  int64_t parts = 0;  // partial slots: each holds hq × head_dim fp32 acc and hq × (m, l)
};

// The plan for `rows`; `token_blocks` (one per step token, -1 text, else the image block; may be
// null = all text) only widens key ranges. Pure: the same inputs give the same plan.
AttentionPlan PlanPagedAttention(const std::vector<RowDesc>& rows,
                                 const std::vector<int32_t>* token_blocks, const PlanOptions& o);

// Bytes of fp32 workspace the plan's partials need at this head_dim.
int64_t PlanWorkspaceBytes(const AttentionPlan& plan, int64_t hq, int64_t hd);

}  // namespace vlmserve::attn
