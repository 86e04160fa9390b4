// Block tables and free lists (see kv_manager.h).
#include "engine/kv_manager.h"

#include <algorithm>

#include "kernels/kv_layout.h"

namespace vlmserve {
namespace {

const std::vector<int32_t> kNoTable;

std::vector<int32_t> AllPages(int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>(n - 1 - i);
  return v;  // descending, so back() is page 0
}

void Return(std::vector<int32_t>& free_list, int32_t page) {
  free_list.insert(std::upper_bound(free_list.begin(), free_list.end(), page, std::greater<>()),
                   page);
}

}  // namespace

KvManager::KvManager(KvPoolSizes pools, int64_t sliding_window, bool has_full, bool has_sliding)
    : pools_(pools),
      window_(sliding_window),
      has_full_(has_full),
      has_sliding_(has_sliding),
      free_full_(has_full ? AllPages(pools.full_pages) : std::vector<int32_t>{}),
      free_sliding_(has_sliding ? AllPages(pools.sliding_pages) : std::vector<int32_t>{}) {}

int32_t KvManager::Take(std::vector<int32_t>& free_list) {
  const int32_t page = free_list.back();
  free_list.pop_back();
  return page;
}

void KvManager::Needed(const Sequence* s, int64_t length, int64_t* full, int64_t* sliding) const {
  const int64_t have = s ? static_cast<int64_t>(s->full.size()) : 0;
  const int64_t want = kv::PagesFor(length);
  *full = has_full_ ? std::max<int64_t>(0, want - have) : 0;
  *sliding = 0;
  if (has_sliding_) {
    const int64_t have_s = s ? static_cast<int64_t>(s->sliding.size()) : 0;
    *sliding = std::max<int64_t>(0, want - have_s);
  }
}

bool KvManager::CanGrow(SequenceId seq, int64_t length) const {
  auto it = sequences_.find(seq);
  int64_t full = 0, sliding = 0;
  Needed(it == sequences_.end() ? nullptr : &it->second, length, &full, &sliding);
  return full <= static_cast<int64_t>(free_full_.size()) &&
         sliding <= static_cast<int64_t>(free_sliding_.size());
}

Status KvManager::Grow(SequenceId seq, int64_t length) {
  if (!CanGrow(seq, length)) {
    return ResourceExhaustedError(
        "the KV cache has too few free pages for " + std::to_string(length) + " positions (" +
        std::to_string(free_full_.size()) + " full-layer and " +
        std::to_string(free_sliding_.size()) + " sliding-layer pages free)");
  }
  Sequence& s = sequences_[seq];
  const size_t want = static_cast<size_t>(kv::PagesFor(length));
  if (has_full_) {
    while (s.full.size() < want) s.full.push_back(Take(free_full_));
  }
  if (has_sliding_) {
    while (s.sliding.size() < want) s.sliding.push_back(Take(free_sliding_));
  }
  s.length = std::max(s.length, length);
  return Status::Ok();
}

void KvManager::ReleaseBeforeWindow(SequenceId seq, int64_t next_position) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end() || !has_sliding_) return;
  std::vector<int32_t>& table = it->second.sliding;
  for (size_t p = 0; p < table.size(); ++p) {
    if (!kv::SlidingPageReleasable(static_cast<int64_t>(p), next_position, window_)) break;
    if (table[p] == kv::kReleasedPage) continue;
    Return(free_sliding_, table[p]);
    table[p] = kv::kReleasedPage;
  }
}

void KvManager::Free(SequenceId seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return;
  // Appended, then one sort (a long sequence returns thousands of pages at once).
  free_full_.insert(free_full_.end(), it->second.full.begin(), it->second.full.end());
  std::sort(free_full_.begin(), free_full_.end(), std::greater<>());
  for (int32_t p : it->second.sliding) {
    if (p != kv::kReleasedPage) free_sliding_.push_back(p);
  }
  std::sort(free_sliding_.begin(), free_sliding_.end(), std::greater<>());
  sequences_.erase(it);
}

const std::vector<int32_t>& KvManager::full_table(SequenceId seq) const {
  auto it = sequences_.find(seq);
  return it == sequences_.end() ? kNoTable : it->second.full;
}

const std::vector<int32_t>& KvManager::sliding_table(SequenceId seq) const {
  auto it = sequences_.find(seq);
  return it == sequences_.end() ? kNoTable : it->second.sliding;
}

int64_t KvManager::length(SequenceId seq) const {
  auto it = sequences_.find(seq);
  return it == sequences_.end() ? 0 : it->second.length;
}

KvCounters KvManager::counters() const {
  KvCounters c;
  c.full_pages_free = static_cast<int64_t>(free_full_.size());
  c.sliding_pages_free = static_cast<int64_t>(free_sliding_.size());
  c.full_pages_used = has_full_ ? pools_.full_pages - c.full_pages_free : 0;
  c.sliding_pages_used = has_sliding_ ? pools_.sliding_pages - c.sliding_pages_free : 0;
  c.live_sequences = sequences_.size();
  return c;
}

int64_t KvManager::max_tokens_per_sequence() const {
  // A sequence keeps every full-layer page; on sliding layers it holds pages for the window plus
  // the chunk being written, which a table as long as the full one also covers.
  const int64_t pages = has_full_ ? pools_.full_pages : pools_.sliding_pages;
  return pages * kv::kPageTokens;
}

}  // namespace vlmserve
