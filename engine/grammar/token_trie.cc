// The token trie and the mask walk (see token_trie.h).
#include "engine/grammar/token_trie.h"

#include <algorithm>
#include <numeric>

namespace vlmserve {

std::shared_ptr<const TokenTrie> TokenTrie::Build(const Tokenizer& tok, int64_t vocab_size) {
  auto t = std::make_shared<TokenTrie>();
  t->vocab_size_ = vocab_size;
  const int64_t n = std::min<int64_t>(vocab_size, static_cast<int64_t>(tok.size()));
  t->bytes_.resize(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    const std::string* s = tok.IdToToken(id);
    if (!s || tok.IsSpecial(id)) continue;
    std::string& out = t->bytes_[static_cast<size_t>(id)];
    if (const int b = tok.ByteValue(id); b >= 0) {
      out.push_back(static_cast<char>(b));
      continue;
    }
    static const std::string kSpace = "\xe2\x96\x81";  // '▁'
    for (size_t i = 0; i < s->size();) {
      if (s->compare(i, kSpace.size(), kSpace) == 0) {
        out.push_back(' ');
        i += kSpace.size();
      } else {
        out.push_back((*s)[i++]);
      }
    }
    t->max_token_bytes_ = std::max(t->max_token_bytes_, out.size());
  }
  // Sorted byte strings → depth-first nodes: each string adds the nodes past its common prefix
  // with the previous one; a node's subtree ends when a later string leaves it.
  std::vector<int32_t> order;
  for (int32_t id = 0; id < n; ++id) {
    if (!t->bytes_[static_cast<size_t>(id)].empty()) order.push_back(id);
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return t->bytes_[static_cast<size_t>(a)] < t->bytes_[static_cast<size_t>(b)];
  });
  std::vector<int32_t> path;  // node index per depth of the current string
  const std::string* prev = nullptr;
  for (int32_t id : order) {
    const std::string& s = t->bytes_[static_cast<size_t>(id)];
    size_t common = 0;
    if (prev) {
      while (common < s.size() && common < prev->size() && s[common] == (*prev)[common]) ++common;
    }
    for (size_t d = path.size(); d > common; --d) {
      t->end_[static_cast<size_t>(path[d - 1])] = static_cast<int32_t>(t->byte_.size());
    }
    path.resize(common);
    for (size_t d = common; d < s.size(); ++d) {
      path.push_back(static_cast<int32_t>(t->byte_.size()));
      t->byte_.push_back(static_cast<uint8_t>(s[d]));
      t->end_.push_back(-1);
      t->token_.push_back(-1);
    }
    const auto node = static_cast<size_t>(path.back());
    if (t->token_[node] < 0) {
      t->token_[node] = id;
    } else {
      t->more_.emplace_back(static_cast<int32_t>(node), id);
    }
    prev = &s;
  }
  for (int32_t node : path) t->end_[static_cast<size_t>(node)] = static_cast<int32_t>(t->byte_.size());
  std::sort(t->more_.begin(), t->more_.end());
  t->has_more_.assign(t->byte_.size(), 0);
  for (const auto& [node, id] : t->more_) t->has_more_[static_cast<size_t>(node)] = 1;
  return t;
}

void TokenTrie::AllowedTokens(const ActionAutomaton& a, const GrammarState& state,
                              uint32_t* mask) const {
  Walk(a, 0, static_cast<int32_t>(byte_.size()), state, mask);
}

void TokenTrie::Walk(const ActionAutomaton& a, int32_t begin, int32_t end,
                     const GrammarState& state, uint32_t* mask) const {
  for (int32_t i = begin; i < end; i = end_[static_cast<size_t>(i)]) {
    GrammarState next = state;
    if (a.Advance(&next, byte_[static_cast<size_t>(i)]) < 0) continue;  // the whole subtree is out
    const auto node = static_cast<size_t>(i);
    if (token_[node] >= 0) {
      mask[token_[node] >> 5] |= 1u << (token_[node] & 31);
      if (has_more_[node]) {
        auto it = std::lower_bound(more_.begin(), more_.end(), std::pair<int32_t, int32_t>{i, -1});
        for (; it != more_.end() && it->first == i; ++it) mask[it->second >> 5] |= 1u << (it->second & 31);
      }
    }
    if (i + 1 < end_[node] && !a.Complete(next)) Walk(a, i + 1, end_[node], next, mask);
  }
}

}  // namespace vlmserve
