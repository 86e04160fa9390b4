// Block tables, reference-counted pages and the prefix cache (see kv_manager.h).
#include "engine/kv_manager.h"

#include <algorithm>

#include "kernels/kv_layout.h"

namespace vlmserve {
namespace {

const std::vector<int32_t> kNoTable;

uint64_t Mix(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

int32_t KvManager::Pool::Take() {
  const int32_t page = free.back();
  free.pop_back();
  refs[static_cast<size_t>(page)] = 1;
  return page;
}

void KvManager::Pool::Unref(int32_t page) {
  if (--refs[static_cast<size_t>(page)] == 0) {
    free.insert(std::upper_bound(free.begin(), free.end(), page, std::greater<>()), page);
  }
}

KvManager::KvManager(KvPoolSizes pools, int64_t sliding_window, bool has_full, bool has_sliding)
    : pools_(pools), window_(sliding_window) {
  auto init = [](Pool& p, bool enabled, int64_t size) {
    p.enabled = enabled;
    p.size = enabled ? size : 0;
    p.refs.assign(static_cast<size_t>(p.size), 0);
    for (int64_t i = p.size - 1; i >= 0; --i) p.free.push_back(static_cast<int32_t>(i));
  };
  init(full_, has_full, pools.full_pages);
  init(sliding_, has_sliding, pools.sliding_pages);
}

void KvManager::Needed(const Sequence* s, int64_t length, int64_t* full, int64_t* sliding) const {
  const int64_t want = kv::PagesFor(length);
  *full = full_.enabled
              ? std::max<int64_t>(0, want - (s ? static_cast<int64_t>(s->full.size()) : 0))
              : 0;
  *sliding = sliding_.enabled
                 ? std::max<int64_t>(0, want - (s ? static_cast<int64_t>(s->sliding.size()) : 0))
                 : 0;
}

Status KvManager::Grow(SequenceId seq, int64_t length) {
  auto it = sequences_.find(seq);
  int64_t nf = 0, ns = 0;
  Needed(it == sequences_.end() ? nullptr : &it->second, length, &nf, &ns);
  if (nf > full_.free_pages() || ns > sliding_.free_pages()) EvictFor(nf, ns);
  if (nf > full_.free_pages() || ns > sliding_.free_pages()) {
    return ResourceExhaustedError(
        "the KV cache has too few free pages for " + std::to_string(length) + " positions (" +
        std::to_string(full_.free_pages()) + " full-layer and " +
        std::to_string(sliding_.free_pages()) + " sliding-layer pages free)");
  }
  Sequence& s = sequences_[seq];
  const size_t want = static_cast<size_t>(kv::PagesFor(length));
  if (full_.enabled) {
    while (s.full.size() < want) s.full.push_back(full_.Take());
  }
  if (sliding_.enabled) {
    while (s.sliding.size() < want) s.sliding.push_back(sliding_.Take());
  }
  s.length = std::max(s.length, length);
  return Status::Ok();
}

void KvManager::ReleaseBeforeWindow(SequenceId seq, int64_t next_position) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end() || !sliding_.enabled) return;
  std::vector<int32_t>& table = it->second.sliding;
  for (size_t p = 0; p < table.size(); ++p) {
    if (!kv::SlidingPageReleasable(static_cast<int64_t>(p), next_position, window_)) break;
    if (table[p] == kv::kReleasedPage) continue;
    sliding_.Unref(table[p]);
    table[p] = kv::kReleasedPage;
  }
}

void KvManager::Free(SequenceId seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return;
  for (int32_t p : it->second.full) full_.Unref(p);
  for (int32_t p : it->second.sliding) {
    if (p != kv::kReleasedPage) sliding_.Unref(p);
  }
  sequences_.erase(it);
}

uint64_t KvManager::ChainKey(uint64_t parent, std::span<const int32_t> page_tokens) {
  uint64_t h = Mix(parent + 0x9e3779b97f4a7c15ull);
  for (int32_t t : page_tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h | 1;  // never 0, which means "no parent"
}

int64_t KvManager::ShareablePages(std::span<const int32_t> tokens, int64_t prefix_len) {
  const int64_t limit = std::min<int64_t>(prefix_len, static_cast<int64_t>(tokens.size()) - 1);
  return std::max<int64_t>(0, limit) / kv::kPageTokens;
}

std::vector<uint64_t> KvManager::Match(std::span<const int32_t> tokens, int64_t pages) const {
  std::vector<uint64_t> keys;
  uint64_t parent = 0;
  for (int64_t i = 0; i < pages; ++i) {
    const auto block = tokens.subspan(static_cast<size_t>(i * kv::kPageTokens), kv::kPageTokens);
    const uint64_t key = ChainKey(parent, block);
    auto it = cache_.find(key);
    if (it == cache_.end() || it->second.parent != parent || it->second.depth != i ||
        !std::equal(block.begin(), block.end(), it->second.tokens.begin())) {
      break;
    }
    keys.push_back(key);
    parent = key;
  }
  return keys;
}

int64_t KvManager::CachedPrefixPages(std::span<const int32_t> tokens, int64_t prefix_len) const {
  return static_cast<int64_t>(Match(tokens, ShareablePages(tokens, prefix_len)).size());
}

int64_t KvManager::AdoptPrefix(SequenceId seq, std::span<const int32_t> tokens,
                               int64_t prefix_len) {
  if (sequences_.count(seq)) return 0;  // only a new sequence starts from the cache
  const std::vector<uint64_t> keys = Match(tokens, ShareablePages(tokens, prefix_len));
  if (keys.empty()) return 0;
  Sequence& s = sequences_[seq];
  for (uint64_t key : keys) {
    CacheEntry& e = cache_.at(key);
    e.last_used = ++clock_;
    if (full_.enabled) {
      full_.Ref(e.full);
      s.full.push_back(e.full);
    }
    if (sliding_.enabled) {
      sliding_.Ref(e.sliding);
      s.sliding.push_back(e.sliding);
    }
  }
  s.length = static_cast<int64_t>(keys.size()) * kv::kPageTokens;
  prefix_hits_ += keys.size();
  return s.length;
}

void KvManager::PublishPrefix(SequenceId seq, std::span<const int32_t> tokens, int64_t prefix_len,
                              int64_t computed) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return;
  const Sequence& s = it->second;
  const int64_t pages = std::min(ShareablePages(tokens, prefix_len), computed / kv::kPageTokens);
  uint64_t parent = 0;
  for (int64_t i = 0; i < pages; ++i) {
    const auto block = tokens.subspan(static_cast<size_t>(i * kv::kPageTokens), kv::kPageTokens);
    const uint64_t key = ChainKey(parent, block);
    auto found = cache_.find(key);
    if (found == cache_.end()) {
      // Only pages the sequence still holds in both tables can join (a released sliding page is
      // gone); the chain stops at the first it cannot offer.
      const int32_t f = full_.enabled ? s.full[static_cast<size_t>(i)] : -1;
      const int32_t sl = sliding_.enabled ? s.sliding[static_cast<size_t>(i)] : -1;
      if (sliding_.enabled && sl == kv::kReleasedPage) break;
      CacheEntry e{parent, i, std::vector<int32_t>(block.begin(), block.end()), f, sl, ++clock_};
      if (full_.enabled) full_.Ref(f);
      if (sliding_.enabled) sliding_.Ref(sl);
      cache_.emplace(key, std::move(e));
    } else if (found->second.parent != parent || found->second.depth != i ||
               !std::equal(block.begin(), block.end(), found->second.tokens.begin())) {
      break;  // a hash collision: leave the cache as it is
    } else {
      found->second.last_used = ++clock_;
    }
    parent = key;
  }
}

bool KvManager::CacheOnly(const CacheEntry& e) const {
  return (!full_.enabled || full_.refs[static_cast<size_t>(e.full)] == 1) &&
         (!sliding_.enabled || sliding_.refs[static_cast<size_t>(e.sliding)] == 1);
}

void KvManager::EvictFor(int64_t full, int64_t sliding) {
  // Candidates: entries only the cache holds, least recently used first, deepest first on ties
  // (a child is useless without its parent, never the other way round).
  std::vector<std::pair<std::pair<uint64_t, int64_t>, uint64_t>> order;
  for (const auto& [key, e] : cache_) {
    if (CacheOnly(e)) order.push_back({{e.last_used, -e.depth}, key});
  }
  std::sort(order.begin(), order.end());
  for (const auto& [rank, key] : order) {
    if (full_.free_pages() >= full && sliding_.free_pages() >= sliding) break;
    const CacheEntry& e = cache_.at(key);
    if (full_.enabled) full_.Unref(e.full);
    if (sliding_.enabled) sliding_.Unref(e.sliding);
    cache_.erase(key);
  }
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

int64_t KvManager::live_sliding_pages(SequenceId seq) const {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return 0;
  return std::count_if(it->second.sliding.begin(), it->second.sliding.end(),
                       [](int32_t p) { return p != kv::kReleasedPage; });
}

int64_t KvManager::available_full_pages() const {
  int64_t n = full_.free_pages();
  for (const auto& [key, e] : cache_) n += full_.enabled && CacheOnly(e);
  return n;
}

int64_t KvManager::available_sliding_pages() const {
  int64_t n = sliding_.free_pages();
  for (const auto& [key, e] : cache_) n += sliding_.enabled && CacheOnly(e);
  return n;
}

KvCounters KvManager::counters() const {
  KvCounters c;
  c.full_pages_free = full_.free_pages();
  c.sliding_pages_free = sliding_.free_pages();
  c.full_pages_used = full_.size - c.full_pages_free;
  c.sliding_pages_used = sliding_.size - c.sliding_pages_free;
  c.cached_pages = static_cast<int64_t>(cache_.size());
  c.live_sequences = sequences_.size();
  c.prefix_hits = prefix_hits_;
  return c;
}

int64_t KvManager::max_tokens_per_sequence() const {
  // A sequence keeps every full-layer page; on sliding layers it holds pages for the window plus
  // the chunk being written, which a table as long as the full one also covers.
  const int64_t pages = full_.enabled ? pools_.full_pages : pools_.sliding_pages;
  return pages * kv::kPageTokens;
}

}  // namespace vlmserve
