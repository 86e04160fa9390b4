// The action grammar as the engine uses it:
//
//   GrammarRegistry   one per served model: the token trie of its tokenizer, compiled grammars by
//                     the schema's canonical text (a bounded LRU) and allowed-token masks by
//                     (grammar, state key) under a byte budget. Thread-safe: requests are compiled
//                     on the preparation workers, masks are read on the engine thread.
//   ActionGrammar     one compiled schema: its automaton, and per state the mask, the forced
//                     bytes (jump-forward) and the tokens its shortest completion takes.
//   ActionMatcher     one sequence's progress through its grammar: what the next sample may be,
//                     and what to append after it.
//
// Jump-forward. When the automaton allows exactly one continuation for some bytes (the literals
// `{"button": "`, `", "reasoning": "`, the rest of a value once its prefix is unique), those bytes
// are appended as tokens without sampling and run through the model in one multi-token step. The
// forced text is tokenized together with the token sampled just before it, which is not in the
// KV cache yet: the sampled "ri" and the forced "ght" become the one token "right", as the
// tokenizer writes the whole action (the form a fine-tuned model was trained on). We force the
// whole run, through its last byte: with Gemma's vocabulary a value's first token never merges
// with the `▁"` before it (tokenize `{"button": "right", ...}`: `▁"`, `right`, `",`), so forcing
// the last token gives the canonical tokens and saves a step. The sampled token's probability
// stays with the first appended token (the one that begins with its bytes).
//
// Budget. Forced tokens count toward max_new_tokens. A matcher never lets a sequence reach a
// state whose shortest completion (tokenized) no longer fits: a sample that would is discarded and
// the shortest completion from before it is appended instead, so a request that was admitted (its
// budget fits the shortest action) always ends with a valid object. The object's last byte ends
// the request (finish reason STOP): the end-of-turn token is the only thing the grammar allows
// next, so it is not sampled.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "engine/grammar/action_schema.h"
#include "engine/grammar/automaton.h"
#include "engine/grammar/token_trie.h"
#include "model/text/tokenizer.h"

namespace vlmserve {

using TokenMask = std::vector<uint32_t>;  // MaskWords(vocab) words (kernels/cpu/sample.h)

class MaskCache;

class ActionGrammar {
 public:
  ActionGrammar(ActionSchema schema, std::shared_ptr<const TokenTrie> trie,
                const Tokenizer& tokenizer, std::shared_ptr<MaskCache> masks, uint64_t uid);

  const ActionAutomaton& automaton() const { return automaton_; }
  const ActionSchema& schema() const { return automaton_.schema(); }
  const TokenTrie& trie() const { return *trie_; }
  // The tokens the shortest action takes (what max_new_tokens must allow).
  int32_t shortest_action_tokens() const { return shortest_tokens_; }
  // The first enum property (the button of the default schema), or -1: what confidence is about.
  int first_enum_property() const { return first_enum_; }

  // The allowed-token mask from `s` (cached).
  std::shared_ptr<const TokenMask> Mask(const GrammarState& s) const;
  // The forced bytes from `s` (cached).
  std::string Forced(const GrammarState& s) const;
  // Tokens of the shortest completion from `s` (cached).
  int32_t CompletionTokens(const GrammarState& s) const;
  // The tokenizer's tokens for plain text (no <bos>, no special tokens).
  std::vector<int32_t> Tokenize(std::string_view text) const;
  // Tokenize, remembered (a sample followed by forced text recurs: `ri` + `ght", ...`).
  std::vector<int32_t> TokenizeCached(const std::string& text) const;
  // Computes the masks of the states reachable from the start where a sample is drawn (with
  // jump-forward: only states with a choice), up to `max_states`; returns how many. Done once
  // per schema so that no request waits for a mask of these states (≈4 ms each at 262k).
  size_t PrecomputeMasks(bool jump_forward, size_t max_states) const;

 private:
  ActionAutomaton automaton_;
  std::shared_ptr<const TokenTrie> trie_;
  const Tokenizer& tokenizer_;
  std::shared_ptr<MaskCache> masks_;
  uint64_t uid_;
  int32_t shortest_tokens_ = 0;
  int first_enum_ = -1;
  mutable std::mutex mu_;  // the small per-state caches below
  mutable std::unordered_map<GrammarState, std::string, GrammarStateHash> forced_;
  mutable std::unordered_map<GrammarState, int32_t, GrammarStateHash> completion_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> tokenized_;
};

// Masks by (grammar uid, state key), least recently used dropped beyond a byte budget.
class MaskCache {
 public:
  explicit MaskCache(size_t max_bytes) : max_bytes_(max_bytes) {}
  std::shared_ptr<const TokenMask> Find(uint64_t uid, const GrammarState& key);
  void Insert(uint64_t uid, const GrammarState& key, std::shared_ptr<const TokenMask> mask);
  size_t bytes() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  struct Key {
    uint64_t uid;
    GrammarState state;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return GrammarStateHash{}(k.state) ^ (k.uid * 0x9E37u); }
  };
  using Lru = std::list<std::pair<Key, std::shared_ptr<const TokenMask>>>;
  mutable std::mutex mu_;
  size_t max_bytes_, bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
  Lru lru_;  // most recent first
  std::unordered_map<Key, Lru::iterator, KeyHash> index_;
};

struct GrammarRegistryOptions {
  size_t max_grammars = 64;             // compiled schemas kept (LRU)
  size_t max_mask_bytes = 256u << 20;   // masks kept, over all grammars (LRU)
};

class GrammarRegistry {
 public:
  GrammarRegistry(const Tokenizer& tokenizer, int64_t vocab_size,
                  GrammarRegistryOptions options = {});
  // The compiled grammar of `schema`, compiled now or found by its canonical text.
  std::shared_ptr<const ActionGrammar> Get(const ActionSchema& schema);
  const TokenTrie& trie() const { return *trie_; }
  const MaskCache& masks() const { return *masks_; }
  uint64_t compiles() const;

 private:
  const Tokenizer& tokenizer_;
  std::shared_ptr<const TokenTrie> trie_;
  std::shared_ptr<MaskCache> masks_;
  GrammarRegistryOptions options_;
  mutable std::mutex mu_;
  uint64_t next_uid_ = 1, compiles_ = 0;
  std::list<std::pair<std::string, std::shared_ptr<const ActionGrammar>>> lru_;
};

// What to append to a sequence after a sample (or at its start).
struct ActionAppend {
  std::vector<int32_t> tokens;
  int32_t sampled = -1;   // index of the token that carries the sample, or -1 (all forced)
  bool complete = false;  // the object is finished: the request ends here
};

class ActionMatcher {
 public:
  ActionMatcher(std::shared_ptr<const ActionGrammar> grammar, bool jump_forward);

  // The tokens forced before anything is sampled (`budget`: max_new_tokens).
  ActionAppend Begin(int32_t budget);
  // The sample `token` (masked logprob `logprob`) was drawn with `budget` tokens left, itself
  // included: what to append. INTERNAL if the token is not one the mask allowed.
  StatusOr<ActionAppend> OnSample(int32_t token, float logprob, int32_t budget);

  // The mask for the next sample; valid until the next Begin/OnSample.
  const uint32_t* mask();
  bool complete() const { return grammar_->automaton().Complete(state_); }
  const ActionGrammar& grammar() const { return *grammar_; }

  // Each property's value as JSON text (strings without their quotes), in schema order.
  const std::vector<std::string>& values() const { return values_; }
  // P(the first enum property's value) under the mask: the product of the masked probabilities of
  // the sampled tokens that carry its bytes (forced bytes are certain); 1 when none was sampled.
  float confidence() const;
  float logprob() const { return logprob_sum_; }  // the sampled tokens' masked logprobs, summed
  int32_t forced_tokens() const { return forced_; }
  int32_t sampled_tokens() const { return sampled_; }

 private:
  // Appends the bytes to the state and the property values.
  void Consume(std::string_view bytes);
  std::string BytesOf(const std::vector<int32_t>& tokens) const;
  ActionAppend Finish(ActionAppend plan, int32_t sampled_token, float logprob);

  std::shared_ptr<const ActionGrammar> grammar_;
  bool jump_forward_;
  GrammarState state_;
  std::vector<std::string> values_;
  std::vector<std::pair<size_t, size_t>> spans_;  // per property: bytes [begin, end) of the text
  struct Sampled {
    size_t begin, end;
    float logprob;
  };
  std::vector<Sampled> samples_;
  size_t offset_ = 0;  // bytes of action text so far
  float logprob_sum_ = 0;
  int32_t forced_ = 0, sampled_ = 0;
  std::shared_ptr<const TokenMask> mask_;
};

}  // namespace vlmserve
