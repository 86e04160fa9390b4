// KvManager: the engine's half of the paged KV cache (the runner owns the memory; kernels/
// kv_layout.h has the layout): the runner's two pools (full-attention and sliding layers) with a
// reference count per page, each live sequence's two block tables, the prefix cache, and the
// counters that must return to zero.
//
// A sequence grows page by page as its positions are written (Grow before each step); on sliding
// layers, pages wholly before the window of the next query are dropped at once
// (ReleaseBeforeWindow after each step) and their table entries become kReleasedPage; Free drops
// everything. A page returns to its pool when nothing references it.
//
// Prefix cache: whole pages of a prompt's leading text (the tokens before its first image: system
// prompt and template) are kept, keyed by their tokens (page i's entry matches only after pages
// 0..i-1 did), and shared by later sequences with the same leading tokens (AdoptPrefix): they
// skip computing those positions — bitwise the same K/V, as prefill in chunks is — and hold no
// copy. The cache holds one reference per cached page; entries nobody else uses are evicted, least
// recently used and deepest first, when a pool runs short. Pages are handed out lowest id first.
// Single-threaded: the engine thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "model/model_runner.h"

namespace vlmserve {

struct KvCounters {
  int64_t full_pages_used = 0, sliding_pages_used = 0;  // referenced by a sequence or the cache
  int64_t full_pages_free = 0, sliding_pages_free = 0;
  int64_t cached_pages = 0;  // prefix-cache entries (each one page per pool kind)
  size_t live_sequences = 0;
  uint64_t prefix_hits = 0;  // pages adopted from the cache, summed over sequences
};

class KvManager {
 public:
  // `has_full` / `has_sliding`: whether the model has layers of that kind (a pool and a table are
  // kept only for kinds it has).
  KvManager(KvPoolSizes pools, int64_t sliding_window, bool has_full, bool has_sliding);

  // Pages so that positions [0, length) of `seq` have somewhere to live (the sequence is created
  // on first use), evicting unused prefix-cache entries when a pool is short.
  // RESOURCE_EXHAUSTED, allocating nothing, when there are not enough pages even so.
  Status Grow(SequenceId seq, int64_t length);
  // Frees the sliding pages that no query at `next_position` or later can read.
  void ReleaseBeforeWindow(SequenceId seq, int64_t next_position);
  // Drops all of `seq`'s pages; unknown sequences are ignored.
  void Free(SequenceId seq);

  // Prefix cache. `tokens[0, prefix_len)` is the shareable prefix; only whole pages count, and
  // never the prompt's last token (a row must compute at least one position to sample).
  // Pages AdoptPrefix would give a new sequence now (admission planning).
  int64_t CachedPrefixPages(std::span<const int32_t> tokens, int64_t prefix_len) const;
  // A new (empty) `seq` takes the cached pages of its prefix; returns the positions they cover.
  int64_t AdoptPrefix(SequenceId seq, std::span<const int32_t> tokens, int64_t prefix_len);
  // After `seq` has computed positions [0, computed), its whole prefix pages join the cache.
  void PublishPrefix(SequenceId seq, std::span<const int32_t> tokens, int64_t prefix_len,
                     int64_t computed);

  // The tables to put in a StepRow (empty when the model has no layer of that kind).
  const std::vector<int32_t>& full_table(SequenceId seq) const;
  const std::vector<int32_t>& sliding_table(SequenceId seq) const;
  int64_t length(SequenceId seq) const;  // positions with pages (0 for unknown sequences)
  int64_t live_sliding_pages(SequenceId seq) const;

  KvCounters counters() const;
  // Free pages plus cache pages only the cache holds (what eviction could free), per pool.
  int64_t available_full_pages() const;
  int64_t available_sliding_pages() const;
  // The most tokens one sequence can ever hold (its full table alone must fit the full pool).
  int64_t max_tokens_per_sequence() const;

 private:
  struct Pool {
    bool enabled = false;
    int64_t size = 0;
    std::vector<int32_t> free;  // sorted descending: back() is the lowest id
    std::vector<int32_t> refs;  // per page
    int32_t Take();
    void Ref(int32_t page) { ++refs[static_cast<size_t>(page)]; }
    void Unref(int32_t page);
    int64_t free_pages() const { return static_cast<int64_t>(free.size()); }
  };
  struct Sequence {
    int64_t length = 0;
    std::vector<int32_t> full, sliding;
  };
  struct CacheEntry {
    uint64_t parent = 0;          // key of page i - 1's entry (0 for page 0)
    int64_t depth = 0;            // page index i
    std::vector<int32_t> tokens;  // the page's kPageTokens tokens
    int32_t full = -1, sliding = -1;
    uint64_t last_used = 0;
  };
  static uint64_t ChainKey(uint64_t parent, std::span<const int32_t> page_tokens);
  // Whole shareable pages of a prefix (at most the page before the prompt's last token).
  static int64_t ShareablePages(std::span<const int32_t> tokens, int64_t prefix_len);
  // Walks the cache from page 0; returns the matching entries' keys in order.
  std::vector<uint64_t> Match(std::span<const int32_t> tokens, int64_t pages) const;
  // Evicts unused entries until the pools have `full` and `sliding` free pages (or none is left).
  void EvictFor(int64_t full, int64_t sliding);
  void Needed(const Sequence* s, int64_t length, int64_t* full, int64_t* sliding) const;
  bool CacheOnly(const CacheEntry& e) const;

  KvPoolSizes pools_;
  int64_t window_;
  Pool full_, sliding_;
  std::unordered_map<SequenceId, Sequence> sequences_;
  std::unordered_map<uint64_t, CacheEntry> cache_;
  uint64_t clock_ = 0;
  uint64_t prefix_hits_ = 0;
};

}  // namespace vlmserve
