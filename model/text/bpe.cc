// BPE merging (see bpe.h). Mirrors HF tokenizers' Word::merge_all: a min-heap of candidate merges
// ordered by (rank, position); a popped candidate is used only if both symbols are still there and
// still form the same pair.
#include "model/text/bpe.h"

#include <cstdio>
#include <queue>

#include "common/utf8.h"

namespace vlmserve {

BpeModel::BpeModel(std::vector<std::string> vocab, const std::vector<Merge>& merges,
                   bool byte_fallback, int32_t unk_id, bool fuse_unk)
    : vocab_(std::move(vocab)),
      byte_fallback_(byte_fallback),
      unk_id_(unk_id),
      fuse_unk_(fuse_unk) {
  token_to_id_.reserve(vocab_.size());
  for (size_t i = 0; i < vocab_.size(); ++i)
    token_to_id_.emplace(vocab_[i], static_cast<int32_t>(i));
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    // Like HF (a map collected in order), a repeated pair keeps its last rank.
    merges_[Key(merges[r].left, merges[r].right)] = {static_cast<int32_t>(r), merges[r].result};
  }
  for (int c = 0; c < 128; ++c)
    ascii_ids_[c] = Find(std::string_view(reinterpret_cast<const char*>(&c), 1));
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_ids_[b] = Find(name);
  }
}

int32_t BpeModel::Find(std::string_view token) const {
  auto it = token_to_id_.find(token);
  return it == token_to_id_.end() ? -1 : it->second;
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* out,
                          const std::vector<uint8_t>* forbidden) const {
  auto allowed = [forbidden](int32_t id) {
    return !forbidden || static_cast<size_t>(id) >= forbidden->size() ||
           !(*forbidden)[static_cast<size_t>(id)];
  };
  auto find_merge = [this, &allowed](int32_t a, int32_t b) -> const MergeInfo* {
    const MergeInfo* m = FindMerge(a, b);
    return m && allowed(m->result) ? m : nullptr;
  };
  // Symbols of a doubly linked list; a merged-away symbol gets id -1.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  auto push = [&sym](int32_t id) {
    const int32_t i = static_cast<int32_t>(sym.size());
    sym.push_back({id, i - 1, i + 1});
  };
  for (size_t i = 0; i < word.size();) {
    const uint8_t c = static_cast<uint8_t>(word[i]);
    size_t len = c < 0x80 ? 1 : Utf8CharLength(word, i);
    if (len == 0) len = 1;  // callers pass valid UTF-8; never loop forever regardless
    const int32_t id = c < 0x80 ? ascii_ids_[c] : Find(word.substr(i, len));
    if (id >= 0 && allowed(id)) {
      push(id);
    } else if (byte_fallback_ && [&] {
                 for (size_t k = 0; k < len; ++k)
                   if (byte_ids_[static_cast<uint8_t>(word[i + k])] < 0) return false;
                 return true;
               }()) {
      for (size_t k = 0; k < len; ++k) push(byte_ids_[static_cast<uint8_t>(word[i + k])]);
    } else if (unk_id_ >= 0) {
      if (!(fuse_unk_ && !sym.empty() && sym.back().id == unk_id_)) push(unk_id_);
    }
    i += len;
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  struct Candidate {
    int32_t rank, pos, result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) {
    if (const MergeInfo* m = find_merge(sym[i].id, sym[i + 1].id))
      heap.push({m->rank, i, m->result});
  }
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = sym[static_cast<size_t>(top.pos)];
    if (left.id < 0 || left.next < 0) continue;
    const int32_t right_pos = left.next;
    Symbol& right = sym[static_cast<size_t>(right_pos)];
    const MergeInfo* still = find_merge(left.id, right.id);
    if (!still || still->result != top.result) continue;  // the pair changed since it was queued
    left.id = top.result;
    left.next = right.next;
    right.id = -1;
    if (right.next >= 0) sym[static_cast<size_t>(right.next)].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeInfo* m = find_merge(sym[static_cast<size_t>(left.prev)].id, left.id))
        heap.push({m->rank, left.prev, m->result});
    }
    if (left.next >= 0) {
      if (const MergeInfo* m = find_merge(left.id, sym[static_cast<size_t>(left.next)].id))
        heap.push({m->rank, top.pos, m->result});
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next)
    out->push_back(sym[static_cast<size_t>(i)].id);
}

}  // namespace vlmserve
