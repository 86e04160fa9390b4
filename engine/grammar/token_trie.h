// TokenTrie: every token's bytes — what decoding it appends to the text — in one trie, so that the
// tokens an automaton state allows are found by one walk that abandons a subtree at the first byte
// the automaton refuses (a 262 k vocabulary shares most prefixes).
//
// A token's bytes: its vocabulary string with '▁' as ' ', or the byte of a <0xNN> byte-fallback
// token. Special tokens (<bos>, <start_of_turn>, <image_soft_token>, ...) and ids without a token
// have no bytes and are never allowed. Two ids may share bytes (<0x41> and "A"); both are allowed.
//
// Layout: nodes in depth-first order, so a node's subtree is the index range [i + 1, end[i]) and
// its next sibling is end[i]; the top level is [0, size). 9 bytes per node.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/grammar/automaton.h"
#include "model/text/tokenizer.h"

namespace vlmserve {

class TokenTrie {
 public:
  // `vocab_size`: the model's (masks cover every id the model can sample; ids beyond the tokenizer
  // are never allowed).
  static std::shared_ptr<const TokenTrie> Build(const Tokenizer& tokenizer, int64_t vocab_size);

  int64_t vocab_size() const { return vocab_size_; }
  const std::string& bytes(int32_t id) const {
    static const std::string kNone;
    return id >= 0 && static_cast<size_t>(id) < bytes_.size() ? bytes_[static_cast<size_t>(id)]
                                                               : kNone;
  }
  size_t nodes() const { return byte_.size(); }
  size_t max_token_bytes() const { return max_token_bytes_; }

  // Sets the bit of every token whose whole byte string the automaton accepts from `state`, in
  // `mask` (MaskWords(vocab_size) words, which the caller zeroes).
  void AllowedTokens(const ActionAutomaton& automaton, const GrammarState& state,
                     uint32_t* mask) const;

 private:
  void Walk(const ActionAutomaton& a, int32_t begin, int32_t end, const GrammarState& state,
            uint32_t* mask) const;

  int64_t vocab_size_ = 0;
  size_t max_token_bytes_ = 0;
  std::vector<std::string> bytes_;  // per id
  std::vector<uint8_t> byte_;       // per node
  std::vector<int32_t> end_;        // per node: one past its subtree
  std::vector<int32_t> token_;      // per node: a token ending here, or -1
  std::vector<std::pair<int32_t, int32_t>> more_;  // (node, id): further tokens ending at a node
  std::vector<uint8_t> has_more_;                  // per node
};

}  // namespace vlmserve
