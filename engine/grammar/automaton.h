// ActionAutomaton: an action schema compiled into a deterministic byte automaton that accepts
// exactly the schema's compact JSON texts (action_schema.h), one byte at a time.
//
// The text is a chain of segments: literals (`{"button": "`, `", "reasoning": "`, ... `"}`) and
// values (an enum as a trie of its values — booleans are the enum {true, false} —, a string as a
// count of class characters, an integer as its digits so far). Every value ends where the next
// literal begins, and that byte can never continue the value ('"' after a string or enum, ',' or
// '}' after an integer or boolean), so the automaton never needs to look ahead.
//
// A state is a small value (GrammarState); Key() folds integer states that accept the same
// continuations (e.g. every 2-digit prefix strictly inside [0, 999]) so caches keyed by it stay
// small. The engine keeps one state per sequence (engine/grammar/action_grammar.h).
#pragma once

#include <bitset>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/grammar/action_schema.h"

namespace vlmserve {

struct GrammarState {
  int32_t seg = 0;    // the segment being matched; == segments() when the object is complete
  int32_t pos = 0;    // literal: bytes matched; enum: trie node; string: characters; integer: digits
  int64_t value = 0;  // integer: the magnitude of the digits so far
  uint32_t flags = 0;  // integer: kNegative, kZero
  static constexpr uint32_t kNegative = 1, kZero = 2;
  bool operator==(const GrammarState&) const = default;
};

struct GrammarStateHash {
  size_t operator()(const GrammarState& s) const {
    uint64_t h = static_cast<uint64_t>(static_cast<uint32_t>(s.seg)) << 32 |
                 static_cast<uint32_t>(s.pos);
    h ^= static_cast<uint64_t>(s.value) * 0x9E3779B97F4A7C15ull + s.flags;
    return std::hash<uint64_t>{}(h * 0xBF58476D1CE4E5B9ull);
  }
};

class ActionAutomaton {
 public:
  explicit ActionAutomaton(const ActionSchema& schema);

  GrammarState Start() const { return {}; }
  bool Complete(const GrammarState& s) const { return s.seg == static_cast<int32_t>(segs_.size()); }
  int32_t segments() const { return static_cast<int32_t>(segs_.size()); }

  // Consumes one byte. Returns the index of the segment that consumed it, or -1 (the state is then
  // unchanged) when the byte is not allowed here.
  int Advance(GrammarState* s, uint8_t byte) const;
  // Consumes bytes; false (state unspecified) if any is refused.
  bool AdvanceBytes(GrammarState* s, std::string_view bytes) const;
  // The schema property whose value segment `seg` is, or -1 for a literal.
  int PropertyOf(int seg) const { return seg < segments() ? segs_[static_cast<size_t>(seg)].property : -1; }

  // The shortest byte string that completes the object from `s` (empty when complete).
  std::string ShortestCompletion(const GrammarState& s) const;
  // The bytes that are the only possible continuation from `s`, as far as they go (empty when
  // there is a choice or the object is complete).
  std::string ForcedBytes(const GrammarState& s) const;
  // The state with every detail that does not change the accepted continuations folded away:
  // equal keys accept equal languages (the key for mask and jump-forward caches).
  GrammarState Key(const GrammarState& s) const;

  // The property's JSON text of a complete object's value bytes: strings as they are (no quotes).
  const ActionSchema& schema() const { return schema_; }

 private:
  struct EnumNode {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    bool terminal = false;
    std::string shortest;  // the shortest suffix from here to a terminal
  };
  struct Segment {
    enum class Kind { kLiteral, kEnum, kString, kInteger } kind = Kind::kLiteral;
    int property = -1;
    std::string literal;
    std::vector<EnumNode> trie;  // node 0 = root
    std::bitset<256> chars;
    uint8_t first_char = 0;  // the class's smallest character (for shortest completions)
    int64_t min_length = 0, max_length = 0;
    int64_t minimum = 0, maximum = 0;
  };

  int32_t EnumChild(const Segment& seg, int32_t node, uint8_t byte) const;
  // Integer magnitude bounds for one sign: [lo, hi]; false when that sign has no number.
  bool MagnitudeRange(const Segment& seg, bool negative, int64_t* lo, int64_t* hi) const;
  bool IntegerFeasible(const Segment& seg, bool negative, int64_t value, int32_t digits) const;
  bool IntegerCanEnd(const Segment& seg, const GrammarState& s) const;
  std::string IntegerShortest(const Segment& seg, const GrammarState& s) const;
  bool CanEnd(const Segment& seg, const GrammarState& s) const;

  ActionSchema schema_;
  std::vector<Segment> segs_;
};

}  // namespace vlmserve
