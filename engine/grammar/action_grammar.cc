// Compiled action grammars, their caches, and one sequence's matcher (see action_grammar.h).
#include "engine/grammar/action_grammar.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/sample.h"

namespace vlmserve {
namespace {

constexpr size_t kMaxStateCacheEntries = 1 << 14;  // forced bytes / completion sizes per grammar

}  // namespace

// ---- MaskCache ----

std::shared_ptr<const TokenMask> MaskCache::Find(uint64_t uid, const GrammarState& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find({uid, key});
  if (it == index_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void MaskCache::Insert(uint64_t uid, const GrammarState& key,
                       std::shared_ptr<const TokenMask> mask) {
  std::lock_guard<std::mutex> lock(mu_);
  if (index_.count({uid, key})) return;
  bytes_ += mask->size() * sizeof(uint32_t);
  lru_.emplace_front(Key{uid, key}, std::move(mask));
  index_[{uid, key}] = lru_.begin();
  while (bytes_ > max_bytes_ && lru_.size() > 1) {  // a mask in use stays alive through its users
    bytes_ -= lru_.back().second->size() * sizeof(uint32_t);
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

size_t MaskCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}
uint64_t MaskCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}
uint64_t MaskCache::misses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_;
}

// ---- ActionGrammar ----

ActionGrammar::ActionGrammar(ActionSchema schema, std::shared_ptr<const TokenTrie> trie,
                             const Tokenizer& tokenizer, std::shared_ptr<MaskCache> masks,
                             uint64_t uid)
    : automaton_(schema),
      trie_(std::move(trie)),
      tokenizer_(tokenizer),
      masks_(std::move(masks)),
      uid_(uid) {
  shortest_tokens_ = static_cast<int32_t>(
      Tokenize(automaton_.ShortestCompletion(automaton_.Start())).size());
  const auto& props = automaton_.schema().properties;
  for (size_t i = 0; i < props.size(); ++i) {
    if (props[i].value.kind == SchemaValue::Kind::kEnum) {
      first_enum_ = static_cast<int>(i);
      break;
    }
  }
}

std::vector<int32_t> ActionGrammar::Tokenize(std::string_view text) const {
  EncodeOptions o;
  o.add_bos = false;
  o.match_special_tokens = false;
  auto ids = tokenizer_.Encode(text, o);
  return ids.ok() ? std::move(ids).value() : std::vector<int32_t>{};  // ASCII never fails
}

std::vector<int32_t> ActionGrammar::TokenizeCached(const std::string& text) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = tokenized_.find(text); it != tokenized_.end()) return it->second;
  }
  std::vector<int32_t> ids = Tokenize(text);
  std::lock_guard<std::mutex> lock(mu_);
  if (tokenized_.size() >= kMaxStateCacheEntries) tokenized_.clear();
  tokenized_.emplace(text, ids);
  return ids;
}

size_t ActionGrammar::PrecomputeMasks(bool jump_forward, size_t max_states) const {
  // Breadth-first over the states reachable byte by byte (by key).
  std::unordered_map<GrammarState, bool, GrammarStateHash> seen;
  std::vector<GrammarState> queue{automaton_.Start()};
  seen[automaton_.Key(queue[0])] = true;
  size_t computed = 0;
  for (size_t i = 0; i < queue.size() && computed < max_states; ++i) {
    const GrammarState s = queue[i];
    if (!jump_forward || Forced(s).empty()) {
      Mask(s);
      ++computed;
    }
    for (int b = 0; b < 256 && seen.size() < 16 * max_states; ++b) {
      GrammarState t = s;
      if (automaton_.Advance(&t, static_cast<uint8_t>(b)) < 0 || automaton_.Complete(t)) continue;
      if (seen.emplace(automaton_.Key(t), true).second) queue.push_back(t);
    }
  }
  return computed;
}

std::shared_ptr<const TokenMask> ActionGrammar::Mask(const GrammarState& s) const {
  const GrammarState key = automaton_.Key(s);
  if (auto m = masks_->Find(uid_, key)) return m;
  auto mask = std::make_shared<TokenMask>(MaskWords(trie_->vocab_size()), 0u);
  if (!automaton_.Complete(s)) trie_->AllowedTokens(automaton_, s, mask->data());
  masks_->Insert(uid_, key, mask);
  return mask;
}

std::string ActionGrammar::Forced(const GrammarState& s) const {
  const GrammarState key = automaton_.Key(s);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = forced_.find(key); it != forced_.end()) return it->second;
  }
  std::string f = automaton_.ForcedBytes(s);
  std::lock_guard<std::mutex> lock(mu_);
  if (forced_.size() >= kMaxStateCacheEntries) forced_.clear();
  forced_.emplace(key, f);
  return f;
}

int32_t ActionGrammar::CompletionTokens(const GrammarState& s) const {
  const GrammarState key = automaton_.Key(s);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = completion_.find(key); it != completion_.end()) return it->second;
  }
  const auto n = static_cast<int32_t>(Tokenize(automaton_.ShortestCompletion(s)).size());
  std::lock_guard<std::mutex> lock(mu_);
  if (completion_.size() >= kMaxStateCacheEntries) completion_.clear();
  completion_.emplace(key, n);
  return n;
}

// ---- GrammarRegistry ----

GrammarRegistry::GrammarRegistry(const Tokenizer& tokenizer, int64_t vocab_size,
                                 GrammarRegistryOptions options)
    : tokenizer_(tokenizer),
      trie_(TokenTrie::Build(tokenizer, vocab_size)),
      masks_(std::make_shared<MaskCache>(options.max_mask_bytes)),
      options_(options) {}

std::shared_ptr<const ActionGrammar> GrammarRegistry::Get(const ActionSchema& schema) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    if (it->first == schema.canonical) {
      lru_.splice(lru_.begin(), lru_, it);
      return lru_.front().second;
    }
  }
  auto g = std::make_shared<const ActionGrammar>(schema, trie_, tokenizer_, masks_, next_uid_++);
  ++compiles_;
  lru_.emplace_front(schema.canonical, g);
  while (lru_.size() > std::max<size_t>(options_.max_grammars, 1)) lru_.pop_back();
  return g;
}

uint64_t GrammarRegistry::compiles() const {
  std::lock_guard<std::mutex> lock(mu_);
  return compiles_;
}

// ---- ActionMatcher ----

ActionMatcher::ActionMatcher(std::shared_ptr<const ActionGrammar> grammar, bool jump_forward)
    : grammar_(std::move(grammar)), jump_forward_(jump_forward) {
  const size_t n = grammar_->schema().properties.size();
  values_.resize(n);
  spans_.assign(n, {std::string::npos, std::string::npos});
}

void ActionMatcher::Consume(std::string_view bytes) {
  const ActionAutomaton& a = grammar_->automaton();
  for (char c : bytes) {
    const int seg = a.Advance(&state_, static_cast<uint8_t>(c));
    const int prop = seg >= 0 ? a.PropertyOf(seg) : -1;
    if (prop >= 0) {
      values_[static_cast<size_t>(prop)].push_back(c);
      auto& span = spans_[static_cast<size_t>(prop)];
      if (span.first == std::string::npos) span.first = offset_;
      span.second = offset_ + 1;
    }
    ++offset_;
  }
  mask_.reset();
}

std::string ActionMatcher::BytesOf(const std::vector<int32_t>& tokens) const {
  std::string s;
  for (int32_t t : tokens) s += grammar_->trie().bytes(t);
  return s;
}

ActionAppend ActionMatcher::Begin(int32_t budget) {
  ActionAppend plan;
  if (!jump_forward_) return plan;
  const ActionAutomaton& a = grammar_->automaton();
  const std::string forced = grammar_->Forced(state_);
  if (forced.empty()) return plan;
  std::vector<int32_t> ids = grammar_->TokenizeCached(forced);
  GrammarState after = state_;
  if (ids.empty() || !a.AdvanceBytes(&after, forced)) return plan;
  const auto used = static_cast<int32_t>(ids.size());
  if (used > budget || (!a.Complete(after) && grammar_->CompletionTokens(after) > budget - used)) {
    return plan;  // the sampler starts from the beginning; the budget still fits the shortest
  }
  Consume(forced);
  forced_ += used;
  plan.tokens = std::move(ids);
  plan.complete = a.Complete(state_);
  return plan;
}

StatusOr<ActionAppend> ActionMatcher::OnSample(int32_t token, float logprob, int32_t budget) {
  const ActionAutomaton& a = grammar_->automaton();
  const std::string& sampled = grammar_->trie().bytes(token);
  GrammarState plain = state_;
  if (sampled.empty() || !a.AdvanceBytes(&plain, sampled)) {
    return InternalError("sampled token " + std::to_string(token) +
                         " is not allowed by the action grammar (the mask was not applied)");
  }
  auto fits = [&](const GrammarState& s, size_t used) {
    const auto n = static_cast<int32_t>(used);
    return n <= budget && (a.Complete(s) || grammar_->CompletionTokens(s) <= budget - n);
  };
  ActionAppend plan;
  plan.tokens = {token};
  plan.sampled = 0;
  std::string bytes = sampled;
  bool ok = fits(plain, 1);
  if (jump_forward_ && !a.Complete(plain)) {
    if (const std::string forced = grammar_->Forced(plain); !forced.empty()) {
      std::vector<int32_t> ids = grammar_->TokenizeCached(sampled + forced);
      GrammarState after = state_;
      if (!ids.empty() && a.AdvanceBytes(&after, sampled + forced) && fits(after, ids.size())) {
        plan.tokens = std::move(ids);
        bytes = sampled + forced;
        ok = true;
      }
    }
  }
  if (!ok) {
    // The sample leads somewhere the budget cannot finish: close the object the shortest way from
    // before it (which the budget always fits).
    const std::string rest = a.ShortestCompletion(state_);
    plan.tokens = grammar_->Tokenize(rest);
    plan.sampled = -1;
    Consume(rest);
    forced_ += static_cast<int32_t>(plan.tokens.size());
    plan.complete = true;
    return plan;
  }
  samples_.push_back({offset_, offset_ + sampled.size(), logprob});
  logprob_sum_ += logprob;
  ++sampled_;
  forced_ += static_cast<int32_t>(plan.tokens.size()) - 1;
  Consume(bytes);
  plan.complete = a.Complete(state_);
  return plan;
}

const uint32_t* ActionMatcher::mask() {
  if (!mask_) mask_ = grammar_->Mask(state_);
  return mask_->data();
}

float ActionMatcher::confidence() const {
  const int p = grammar_->first_enum_property();
  if (p < 0) return 1.f;
  const auto [begin, end] = spans_[static_cast<size_t>(p)];
  if (begin == std::string::npos) return 1.f;
  double sum = 0;
  for (const Sampled& s : samples_) {
    if (s.begin < end && s.end > begin) sum += s.logprob;
  }
  return static_cast<float>(std::exp(sum));
}

}  // namespace vlmserve
