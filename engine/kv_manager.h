// KvManager: the engine's half of the paged KV cache (the runner owns the memory; kernels/
// kv_layout.h has the layout): free lists of the runner's two pools (full-attention and sliding
// layers), each live sequence's two block tables, and the counters that must return to zero.
//
// A sequence grows page by page as its positions are written (Grow before each step); on sliding
// layers, pages wholly before the window of the next query are released at once
// (ReleaseBeforeWindow after each step) and their table entries become kReleasedPage; Free returns
// everything. Pages are handed out lowest id first, so runs are reproducible. Single-threaded:
// the engine thread owns it.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "model/model_runner.h"

namespace vlmserve {

struct KvCounters {
  int64_t full_pages_used = 0, sliding_pages_used = 0;
  int64_t full_pages_free = 0, sliding_pages_free = 0;
  size_t live_sequences = 0;
};

class KvManager {
 public:
  // `has_full` / `has_sliding`: whether the model has layers of that kind (a pool and a table are
  // kept only for kinds it has).
  KvManager(KvPoolSizes pools, int64_t sliding_window, bool has_full, bool has_sliding);

  // Pages so that positions [0, length) of `seq` have somewhere to live (the sequence is created
  // on first use). RESOURCE_EXHAUSTED, allocating nothing, when a pool has too few free pages.
  Status Grow(SequenceId seq, int64_t length);
  // Whether Grow(seq, length) would succeed now (admission).
  bool CanGrow(SequenceId seq, int64_t length) const;
  // Frees the sliding pages that no query at `next_position` or later can read.
  void ReleaseBeforeWindow(SequenceId seq, int64_t next_position);
  // Returns all of `seq`'s pages; unknown sequences are ignored.
  void Free(SequenceId seq);

  // The tables to put in a StepRow (empty when the model has no layer of that kind).
  const std::vector<int32_t>& full_table(SequenceId seq) const;
  const std::vector<int32_t>& sliding_table(SequenceId seq) const;
  int64_t length(SequenceId seq) const;  // positions with pages (0 for unknown sequences)

  KvCounters counters() const;
  // The most tokens one sequence can ever hold (its full table alone must fit the full pool).
  int64_t max_tokens_per_sequence() const;

 private:
  struct Sequence {
    int64_t length = 0;
    std::vector<int32_t> full, sliding;
  };
  static int32_t Take(std::vector<int32_t>& free_list);
  // Extra pages Grow(seq, length) needs from each pool.
  void Needed(const Sequence* s, int64_t length, int64_t* full, int64_t* sliding) const;

  KvPoolSizes pools_;
  int64_t window_;
  bool has_full_, has_sliding_;
  std::vector<int32_t> free_full_, free_sliding_;  // kept sorted descending: back() is the lowest
  std::unordered_map<SequenceId, Sequence> sequences_;
};

}  // namespace vlmserve
