// The action automaton (see automaton.h).
#include "engine/grammar/automaton.h"

#include <algorithm>

namespace vlmserve {
namespace {

constexpr int32_t kMaxDigits = 16;  // 1e15 has 16 digits

int64_t Pow10(int32_t m) {
  int64_t p = 1;
  for (int32_t i = 0; i < m; ++i) p *= 10;
  return p;
}

int32_t Digits(int64_t v) {
  int32_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

bool Quoted(SchemaValue::Kind k) {
  return k == SchemaValue::Kind::kEnum || k == SchemaValue::Kind::kString;
}

}  // namespace

ActionAutomaton::ActionAutomaton(const ActionSchema& schema) : schema_(schema) {
  std::string literal = "{";
  for (size_t i = 0; i < schema.properties.size(); ++i) {
    const SchemaProperty& p = schema.properties[i];
    literal += (i ? ", \"" : "\"") + p.name + "\": ";
    if (Quoted(p.value.kind)) literal += "\"";
    Segment lit;
    lit.literal = literal;
    segs_.push_back(std::move(lit));
    literal.clear();

    Segment v;
    v.property = static_cast<int>(i);
    switch (p.value.kind) {
      case SchemaValue::Kind::kEnum:
      case SchemaValue::Kind::kBoolean: {
        v.kind = Segment::Kind::kEnum;
        const std::vector<std::string> values =
            p.value.kind == SchemaValue::Kind::kBoolean ? std::vector<std::string>{"true", "false"}
                                                        : p.value.values;
        v.trie.emplace_back();
        for (const std::string& value : values) {
          int32_t node = 0;
          for (unsigned char c : value) {
            int32_t next = EnumChild(v, node, c);
            if (next < 0) {
              next = static_cast<int32_t>(v.trie.size());
              v.trie.emplace_back();
              auto& ch = v.trie[static_cast<size_t>(node)].children;
              ch.insert(std::upper_bound(ch.begin(), ch.end(), std::pair<uint8_t, int32_t>{c, -1}),
                        {c, next});
            }
            node = next;
          }
          v.trie[static_cast<size_t>(node)].terminal = true;
        }
        // Shortest suffixes, children before parents (children have larger indices).
        for (size_t n = v.trie.size(); n-- > 0;) {
          EnumNode& node = v.trie[n];
          if (node.terminal) continue;
          bool found = false;
          for (const auto& [byte, child] : node.children) {
            std::string s = static_cast<char>(byte) + v.trie[static_cast<size_t>(child)].shortest;
            if (!found || s.size() < node.shortest.size()) node.shortest = std::move(s);
            found = true;
          }
        }
        break;
      }
      case SchemaValue::Kind::kString:
        v.kind = Segment::Kind::kString;
        v.chars = p.value.chars;
        v.min_length = p.value.min_length;
        v.max_length = p.value.max_length;
        for (int c = 0; c < 256; ++c) {
          if (v.chars[static_cast<size_t>(c)]) {
            v.first_char = static_cast<uint8_t>(c);
            break;
          }
        }
        break;
      case SchemaValue::Kind::kInteger:
        v.kind = Segment::Kind::kInteger;
        v.minimum = p.value.minimum;
        v.maximum = p.value.maximum;
        break;
    }
    segs_.push_back(std::move(v));
    if (Quoted(p.value.kind)) literal = "\"";
  }
  Segment last;
  last.literal = literal + "}";
  segs_.push_back(std::move(last));
}

int32_t ActionAutomaton::EnumChild(const Segment& seg, int32_t node, uint8_t byte) const {
  const auto& ch = seg.trie[static_cast<size_t>(node)].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::pair<uint8_t, int32_t>{byte, INT32_MIN});
  return it != ch.end() && it->first == byte ? it->second : -1;
}

bool ActionAutomaton::MagnitudeRange(const Segment& seg, bool negative, int64_t* lo,
                                     int64_t* hi) const {
  if (!negative) {
    if (seg.maximum < 0) return false;
    *lo = std::max<int64_t>(seg.minimum, 0);
    *hi = seg.maximum;
  } else {
    if (seg.minimum > -1) return false;
    *lo = std::max<int64_t>(-seg.maximum, 1);
    *hi = -seg.minimum;
  }
  return *lo <= *hi;
}

bool ActionAutomaton::IntegerFeasible(const Segment& seg, bool negative, int64_t value,
                                      int32_t digits) const {
  int64_t lo, hi;
  if (!MagnitudeRange(seg, negative, &lo, &hi)) return false;
  if (digits == 0) return true;
  for (int32_t m = 0; digits + m <= kMaxDigits; ++m) {
    const int64_t p = Pow10(m), first = value * p, last = first + p - 1;
    if (first > hi) break;
    if (last >= lo) return true;
  }
  return false;
}

bool ActionAutomaton::IntegerCanEnd(const Segment& seg, const GrammarState& s) const {
  if (s.pos == 0) return false;
  const int64_t v = (s.flags & GrammarState::kNegative) ? -s.value : s.value;
  return v >= seg.minimum && v <= seg.maximum;
}

bool ActionAutomaton::CanEnd(const Segment& seg, const GrammarState& s) const {
  switch (seg.kind) {
    case Segment::Kind::kLiteral:
      return false;
    case Segment::Kind::kEnum:
      return seg.trie[static_cast<size_t>(s.pos)].terminal;
    case Segment::Kind::kString:
      return s.pos >= seg.min_length;
    case Segment::Kind::kInteger:
      return IntegerCanEnd(seg, s);
  }
  return false;
}

int ActionAutomaton::Advance(GrammarState* s, uint8_t b) const {
  GrammarState t = *s;
  auto next_segment = [&] { t = {t.seg + 1, 0, 0, 0}; };
  while (!Complete(t)) {
    const Segment& seg = segs_[static_cast<size_t>(t.seg)];
    const int here = t.seg;
    switch (seg.kind) {
      case Segment::Kind::kLiteral:
        if (static_cast<uint8_t>(seg.literal[static_cast<size_t>(t.pos)]) != b) return -1;
        if (++t.pos == static_cast<int32_t>(seg.literal.size())) next_segment();
        *s = t;
        return here;
      case Segment::Kind::kEnum: {
        const int32_t child = EnumChild(seg, t.pos, b);
        if (child >= 0) {
          t.pos = child;
          const EnumNode& n = seg.trie[static_cast<size_t>(child)];
          if (n.terminal && n.children.empty()) next_segment();
          *s = t;
          return here;
        }
        break;
      }
      case Segment::Kind::kString:
        if (seg.chars[b] && t.pos < seg.max_length) {
          ++t.pos;
          *s = t;
          return here;
        }
        break;
      case Segment::Kind::kInteger: {
        const bool neg = t.flags & GrammarState::kNegative;
        if (b == '-' && t.pos == 0 && !neg) {
          if (IntegerFeasible(seg, true, 0, 0)) {
            t.flags |= GrammarState::kNegative;
            *s = t;
            return here;
          }
          return -1;
        }
        if (b >= '0' && b <= '9' && !(t.flags & GrammarState::kZero)) {
          const int64_t d = b - '0';
          if (t.pos == 0 && d == 0) {
            if (!neg && seg.minimum <= 0 && seg.maximum >= 0) {  // "0" (never "-0")
              t.pos = 1;
              t.flags |= GrammarState::kZero;
              *s = t;
              return here;
            }
          } else if (t.pos < kMaxDigits && IntegerFeasible(seg, neg, t.value * 10 + d, t.pos + 1)) {
            t.value = t.value * 10 + d;
            ++t.pos;
            *s = t;
            return here;
          }
        }
        break;
      }
    }
    // The value cannot take this byte: if it may end here, the byte belongs to what follows.
    if (!CanEnd(seg, t)) return -1;
    next_segment();
  }
  return -1;
}

bool ActionAutomaton::AdvanceBytes(GrammarState* s, std::string_view bytes) const {
  for (char c : bytes) {
    if (Advance(s, static_cast<uint8_t>(c)) < 0) return false;
  }
  return true;
}

std::string ActionAutomaton::IntegerShortest(const Segment& seg, const GrammarState& s) const {
  const bool neg = s.flags & GrammarState::kNegative;
  if (s.flags & GrammarState::kZero) return "";
  if (s.pos == 0) {
    std::string best;
    bool found = false;
    for (bool n : {false, true}) {
      if (neg && !n) continue;
      int64_t lo, hi;
      if (!MagnitudeRange(seg, n, &lo, &hi)) continue;
      std::string text = (n && !neg ? "-" : "") + std::to_string(lo);
      if (!found || text.size() < best.size()) best = std::move(text);
      found = true;
    }
    return best;
  }
  int64_t lo, hi;
  MagnitudeRange(seg, neg, &lo, &hi);
  for (int32_t m = 0; s.pos + m <= kMaxDigits; ++m) {
    const int64_t p = Pow10(m), first = s.value * p, last = first + p - 1;
    if (first > hi) break;
    if (last < lo) continue;
    if (m == 0) return "";
    const int64_t rest = std::max(lo, first) - first;
    std::string digits = std::to_string(rest);
    return std::string(static_cast<size_t>(m - Digits(rest)), '0') + digits;
  }
  return "";  // unreachable for a feasible state
}

std::string ActionAutomaton::ShortestCompletion(const GrammarState& s) const {
  std::string out;
  GrammarState t = s;
  for (; !Complete(t); t = {t.seg + 1, 0, 0, 0}) {
    const Segment& seg = segs_[static_cast<size_t>(t.seg)];
    switch (seg.kind) {
      case Segment::Kind::kLiteral:
        out += seg.literal.substr(static_cast<size_t>(t.pos));
        break;
      case Segment::Kind::kEnum:
        out += seg.trie[static_cast<size_t>(t.pos)].shortest;
        break;
      case Segment::Kind::kString:
        if (t.pos < seg.min_length) {
          out.append(static_cast<size_t>(seg.min_length - t.pos), static_cast<char>(seg.first_char));
        }
        break;
      case Segment::Kind::kInteger:
        out += IntegerShortest(seg, t);
        break;
    }
  }
  return out;
}

std::string ActionAutomaton::ForcedBytes(const GrammarState& s) const {
  std::string out;
  GrammarState t = s;
  while (!Complete(t) && out.size() < 4096) {
    int allowed = 0;
    GrammarState only;
    uint8_t byte = 0;
    for (int b = 0; b < 256 && allowed < 2; ++b) {
      GrammarState u = t;
      if (Advance(&u, static_cast<uint8_t>(b)) >= 0) {
        ++allowed;
        only = u;
        byte = static_cast<uint8_t>(b);
      }
    }
    if (allowed != 1) break;
    out.push_back(static_cast<char>(byte));
    t = only;
  }
  return out;
}

GrammarState ActionAutomaton::Key(const GrammarState& s) const {
  if (Complete(s)) return {segments(), 0, 0, 0};
  const Segment& seg = segs_[static_cast<size_t>(s.seg)];
  if (seg.kind != Segment::Kind::kInteger || s.pos == 0 || (s.flags & GrammarState::kZero)) {
    return s;
  }
  // Digits so far: the continuations are "m more digits, any of them" for each m in a set M,
  // unless the prefix still runs along a bound. Fold the free case to (seg, M, sign).
  const bool neg = s.flags & GrammarState::kNegative;
  int64_t lo, hi;
  MagnitudeRange(seg, neg, &lo, &hi);
  uint32_t full = 0;
  for (int32_t m = 0; s.pos + m <= kMaxDigits; ++m) {
    const int64_t p = Pow10(m), first = s.value * p, last = first + p - 1;
    if (first > hi) break;
    const bool inside = first >= lo && last <= hi, touches = last >= lo;
    if (touches && !inside) return s;  // partially inside: a tight state, keep it exact
    if (inside) full |= 1u << m;
  }
  return {s.seg, -1 - static_cast<int32_t>(full), 0, s.flags & GrammarState::kNegative};
}

}  // namespace vlmserve
