// AddedTokenMatcher: finds tokenizer.json's "added tokens" in raw text, leftmost-longest, as HF
// tokenizers does before normalization and BPE (for tokens with normalized=false, which is all of
// Gemma 3's 6,415). A byte trie walked from each candidate position: O(text × longest token).
// Special tokens can be excluded per call, so text a user typed is never read as a control token
// (the prompt builder decides which spans may contain them).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace vlmserve {

class AddedTokenMatcher {
 public:
  AddedTokenMatcher();
  void Add(std::string_view content, int32_t id, bool special);  // content non-empty

  struct Match {
    size_t begin = 0, end = 0;  // byte range in the text
    int32_t id = -1;
  };
  // Where special tokens may match: everywhere, nowhere, or only entirely inside one of `ranges`
  // (sorted, non-overlapping [begin, end) byte ranges of the text).
  struct SpecialPolicy {
    bool everywhere = true;
    const std::vector<std::pair<size_t, size_t>>* ranges = nullptr;
    bool Allows(size_t begin, size_t end) const;
  };
  // The leftmost match starting at or after `from` (the longest one there), or nullopt.
  std::optional<Match> FindNext(std::string_view text, size_t from,
                                const SpecialPolicy& special) const;

  size_t max_length() const { return max_length_; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t id = -1;                                    // a token ends here
    bool special = false;
  };
  int32_t Child(int32_t node, uint8_t byte) const;
  std::vector<Node> nodes_;                 // nodes_[0] is the root
  std::array<int32_t, 256> root_children_;  // direct table for the first byte
  size_t max_length_ = 0;
};

}  // namespace vlmserve
