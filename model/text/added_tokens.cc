// Leftmost-longest added-token matching (see added_tokens.h).
#include "model/text/added_tokens.h"

#include <algorithm>
#include <iterator>

namespace vlmserve {

AddedTokenMatcher::AddedTokenMatcher() : nodes_(1) { root_children_.fill(-1); }

int32_t AddedTokenMatcher::Child(int32_t node, uint8_t byte) const {
  if (node == 0) return root_children_[byte];
  const auto& ch = nodes_[static_cast<size_t>(node)].children;
  auto it =
      std::lower_bound(ch.begin(), ch.end(), byte,
                       [](const std::pair<uint8_t, int32_t>& p, uint8_t b) { return p.first < b; });
  return it != ch.end() && it->first == byte ? it->second : -1;
}

void AddedTokenMatcher::Add(std::string_view content, int32_t id, bool special) {
  int32_t node = 0;
  for (char c : content) {
    const uint8_t b = static_cast<uint8_t>(c);
    int32_t next = Child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      if (node == 0) {
        root_children_[b] = next;
      } else {
        auto& ch = nodes_[static_cast<size_t>(node)].children;
        ch.insert(std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{-1})),
                  {b, next});
      }
    }
    node = next;
  }
  nodes_[static_cast<size_t>(node)].id = id;
  nodes_[static_cast<size_t>(node)].special = special;
  max_length_ = std::max(max_length_, content.size());
}

bool AddedTokenMatcher::SpecialPolicy::Allows(size_t begin, size_t end) const {
  if (!ranges) return everywhere;
  // The last range starting at or before `begin` must also contain `end`.
  auto it =
      std::upper_bound(ranges->begin(), ranges->end(), begin,
                       [](size_t b, const std::pair<size_t, size_t>& r) { return b < r.first; });
  return it != ranges->begin() && end <= std::prev(it)->second;
}

std::optional<AddedTokenMatcher::Match> AddedTokenMatcher::FindNext(
    std::string_view text, size_t from, const SpecialPolicy& special) const {
  for (size_t i = from; i < text.size(); ++i) {
    int32_t node = root_children_[static_cast<uint8_t>(text[i])];
    if (node < 0) continue;
    Match best;
    for (size_t j = i;;) {
      const Node& n = nodes_[static_cast<size_t>(node)];
      if (n.id >= 0 && (!n.special || special.Allows(i, j + 1))) best = {i, j + 1, n.id};
      if (++j >= text.size()) break;
      node = Child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
    }
    if (best.id >= 0) return best;
  }
  return std::nullopt;
}

}  // namespace vlmserve
