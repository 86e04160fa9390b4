// BpeModel: the byte-fallback BPE of tokenizer.json (HF tokenizers' `BPE` model with
// byte_fallback, no dropout, no subword prefix/suffix, ignore_merges = false), applied to one word.
//
// A word is split into characters; each character is its vocabulary id, or — when it has none —
// one <0xNN> token per UTF-8 byte. Then the lowest-ranked adjacent pair is merged repeatedly
// (ties: leftmost first) until no pair has a merge: a priority queue over (rank, position) with
// lazy invalidation, O(n log n) in the word length — Gemma's pre-tokenizer never splits, so a word
// is everything between two added tokens and can be hundreds of kilobytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace vlmserve {

struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, TransparentStringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `vocab[i]` is token i's string; merges are (left id, right id) → result id, in rank order.
  struct Merge {
    int32_t left, right, result;
  };
  BpeModel(std::vector<std::string> vocab, const std::vector<Merge>& merges, bool byte_fallback,
           int32_t unk_id, bool fuse_unk);

  // Appends the ids of `word` (valid UTF-8, already normalized) to `out`. When `forbidden` is
  // given (a flag per id), no character lookup or merge may produce a flagged id: the tokenizer
  // uses it to keep special tokens out of text where they must not be recognised, even if the
  // merges could spell them (Gemma 3's cannot; a tokenizer trained on chat transcripts can).
  void EncodeWord(std::string_view word, std::vector<int32_t>* out,
                  const std::vector<uint8_t>* forbidden = nullptr) const;

  const std::vector<std::string>& vocab() const { return vocab_; }
  int32_t Find(std::string_view token) const;  // -1 if absent
  int32_t byte_id(uint8_t b) const { return byte_ids_[b]; }

 private:
  struct MergeInfo {
    int32_t rank, result;
  };
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const MergeInfo* FindMerge(int32_t a, int32_t b) const {
    auto it = merges_.find(Key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  std::vector<std::string> vocab_;
  TokenMap token_to_id_;
  std::unordered_map<uint64_t, MergeInfo> merges_;
  int32_t ascii_ids_[128];  // single-byte characters, the common case
  int32_t byte_ids_[256];   // <0xNN> tokens, -1 where missing
  bool byte_fallback_;
  int32_t unk_id_;
  bool fuse_unk_;
};

}  // namespace vlmserve
