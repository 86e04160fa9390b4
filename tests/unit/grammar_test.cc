// The action grammar: schemas (default, narrowed, JSON Schema subset and its refusals), the byte
// automaton against brute force, token masks against a brute-force walk over the whole vocabulary
// (the real Gemma 3 tokenizer and a tiny one), and matchers that always end with a valid action
// under random samples and tight budgets.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "engine/grammar/action_grammar.h"
#include "kernels/cpu/sample.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using vlmserve::testing::FixturePath;
using vlmserve::testing::SharedGemma3Dir;

bool Accepts(const ActionAutomaton& a, std::string_view text) {
  GrammarState s = a.Start();
  return a.AdvanceBytes(&s, text) && a.Complete(s);
}

// ---- schemas ----

TEST(ActionSchemaTest, DefaultAcceptsTheSeedsFormatOnly) {
  const ActionAutomaton a(DefaultActionSchema());
  EXPECT_TRUE(Accepts(a, R"({"button": "right", "reasoning": "clear_path", "context": "navigation"})"));
  EXPECT_TRUE(Accepts(a, R"({"button": "a", "reasoning": "x", "context": "other"})"));
  EXPECT_TRUE(Accepts(a, R"({"button": "select", "reasoning": "wall ahead 2", "context": "menu"})"));
  const char* bad[] = {
      R"({"button":"right", "reasoning": "clear_path", "context": "navigation"})",   // no space
      R"({"button": "right",  "reasoning": "clear_path", "context": "navigation"})",  // two
      R"({"reasoning": "x", "button": "a", "context": "other"})",                    // order
      R"({"button": "jump", "reasoning": "x", "context": "other"})",                 // button
      R"({"button": "a", "reasoning": "", "context": "other"})",                     // empty
      R"({"button": "a", "reasoning": "Clear", "context": "other"})",                // class
      R"({"button": "a", "reasoning": "a\"b", "context": "other"})",                 // quote
      R"({"button": "a", "reasoning": "a}b", "context": "other"})",                  // brace
      R"({"button": "a", "reasoning": "x", "context": "other"} )",                   // trailing
      R"({"button": "a", "reasoning": "x", "context": "other"}})",
      "{\"button\": \"a\", \"reasoning\": \"x\", \"context\": \"other\"}\n",
      R"({"button": "a", "reasoning": "x", "context": "othe"})",
  };
  for (const char* t : bad) EXPECT_FALSE(Accepts(a, t)) << t;
  EXPECT_TRUE(Accepts(a, "{\"button\": \"a\", \"reasoning\": \"" + std::string(64, 'z') +
                             "\", \"context\": \"other\"}"));
  EXPECT_FALSE(Accepts(a, "{\"button\": \"a\", \"reasoning\": \"" + std::string(65, 'z') +
                              "\", \"context\": \"other\"}"));
}

TEST(ActionSchemaTest, NarrowButtons) {
  auto s = NarrowButtons({"up", "a", "up"});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->properties[0].value.values, (std::vector<std::string>{"a", "up"}));
  const ActionAutomaton a(*s);
  EXPECT_TRUE(Accepts(a, R"({"button": "up", "reasoning": "x", "context": "other"})"));
  EXPECT_FALSE(Accepts(a, R"({"button": "down", "reasoning": "x", "context": "other"})"));
  EXPECT_NE(s->canonical, DefaultActionSchema().canonical);
  EXPECT_EQ(NarrowButtons({"a", "up"})->canonical, s->canonical);
  EXPECT_FALSE(NarrowButtons({}).ok());
  auto bad = NarrowButtons({"jump"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"jump\" is not a button"), std::string::npos);
}

TEST(ActionSchemaTest, JsonSchemaSubset) {
  auto s = ParseActionSchema(R"({"type": "object", "properties": {
      "move": {"type": "string", "enum": ["n", "s"]},
      "steps": {"type": "integer", "minimum": -3, "maximum": 120},
      "run": {"type": "boolean"},
      "note": {"type": "string", "pattern": "^[a-c]{2,3}$", "description": "ignored"}},
      "required": ["move", "steps", "run", "note"], "additionalProperties": false})");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const ActionAutomaton a(*s);
  EXPECT_TRUE(Accepts(a, R"({"move": "n", "steps": 120, "run": true, "note": "abc"})"));
  EXPECT_TRUE(Accepts(a, R"({"move": "s", "steps": -3, "run": false, "note": "ab"})"));
  EXPECT_TRUE(Accepts(a, R"({"move": "s", "steps": 0, "run": false, "note": "ab"})"));
  EXPECT_FALSE(Accepts(a, R"({"move": "s", "steps": 121, "run": false, "note": "ab"})"));
  EXPECT_FALSE(Accepts(a, R"({"move": "s", "steps": -4, "run": false, "note": "ab"})"));
  EXPECT_FALSE(Accepts(a, R"({"move": "s", "steps": 007, "run": false, "note": "ab"})"));
  EXPECT_FALSE(Accepts(a, R"({"move": "s", "steps": -0, "run": false, "note": "ab"})"));
  EXPECT_FALSE(Accepts(a, R"({"move": "s", "steps": 1, "run": "true", "note": "ab"})"));
  EXPECT_FALSE(Accepts(a, R"({"move": "s", "steps": 1, "run": true, "note": "a"})"));
  EXPECT_FALSE(Accepts(a, R"({"move": "s", "steps": 1, "run": true, "note": "abcd"})"));
}

TEST(ActionSchemaTest, RefusalsNameTheKeyword) {
  const std::pair<const char*, const char*> cases[] = {
      {"[]", "must be a JSON object"},
      {"{", "not valid JSON"},
      {R"({"type": "array"})", "type must be \"object\""},
      {R"({"type": "object", "properties": {}})", "1 to 32 properties"},
      {R"({"type": "object", "oneOf": []})", "keyword \"oneOf\""},
      {R"({"type": "object", "properties": {"a": {"type": "number"}}})", "\"number\" is not supported"},
      {R"({"type": "object", "properties": {"a": {"type": "string"}}})", "needs maxLength"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "maxLength": 9999}}})", "at most 256"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3, "format": "x"}}})", "keyword \"format\""},
      {R"({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3, "pattern": "[a-z]+"}}})", "pattern must be"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3, "pattern": "^[\"a]+$"}}})", "printable ASCII"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "minLength": 5, "maxLength": 3}}})", "minLength 5"},
      {R"({"type": "object", "properties": {"a": {"enum": ["x", "x"]}}})", "twice"},
      {R"({"type": "object", "properties": {"a": {"enum": ["x\"y"]}}})", "printable ASCII"},
      {R"({"type": "object", "properties": {"a": {"enum": [1]}}})", "strings only"},
      {R"({"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}})", "minimum and maximum"},
      {R"({"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 1e300}}})", "within"},
      {R"({"type": "object", "properties": {"a": {"type": "integer", "minimum": 5, "maximum": 1}}})", "greater than"},
      {R"({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": []})", "every property"},
      {R"({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["b", "a"]})", "not a property"},
      {R"({"type": "object", "properties": {"a": {"type": "boolean"}}, "additionalProperties": true})", "additionalProperties must be false"},
      {R"({"type": "object", "properties": {"a\"b": {"type": "boolean"}}})", "property name"},
      {"[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]", "deeper"},
  };
  for (const auto& [text, want] : cases) {
    auto s = ParseActionSchema(text);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(want), std::string::npos)
        << text << " → " << s.status().message();
  }
}

// ---- the automaton against brute force ----

// Every string over `alphabet` up to `len` bytes, in order of length.
std::vector<std::string> AllStrings(const std::string& alphabet, size_t len) {
  std::vector<std::string> out{""};
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].size() == len) continue;
    for (char c : alphabet) out.push_back(out[i] + c);
  }
  return out;
}

bool CanonicalIntegerIn(const std::string& s, int64_t lo, int64_t hi) {
  if (s.empty() || s == "-") return false;
  const size_t d = s[0] == '-';
  if (s.find('-', d) != std::string::npos || (s.size() > d + 1 && s[d] == '0') || s == "-0") return false;
  const long long v = std::stoll(s);
  return v >= lo && v <= hi;
}

TEST(ActionAutomatonTest, IntegersMatchBruteForce) {
  const std::pair<int64_t, int64_t> ranges[] = {{0, 100}, {-3, 120}, {-250, -17}, {5, 5},
                                                {0, 0},   {7, 1999}, {-9, 9},     {10, 99}};
  for (const auto& [lo, hi] : ranges) {
    auto schema = ParseActionSchema(R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": )" +
                                    std::to_string(lo) + ", \"maximum\": " + std::to_string(hi) + "}}}");
    ASSERT_TRUE(schema.ok());
    const ActionAutomaton a(*schema);
    for (const std::string& s : AllStrings("-0123456789", 4)) {
      EXPECT_EQ(Accepts(a, "{\"n\": " + s + "}"), CanonicalIntegerIn(s, lo, hi))
          << "[" << lo << ", " << hi << "] " << s;
    }
  }
}

// States with equal keys accept the same continuations; shortest completions complete and are
// the shortest; forced bytes are the only continuation.
TEST(ActionAutomatonTest, KeysCompletionsAndForcedBytesMatchBruteForce) {
  auto schema = ParseActionSchema(R"({"type": "object", "properties": {
      "n": {"type": "integer", "minimum": -30, "maximum": 4500},
      "e": {"enum": ["ab", "abc", "b"]}, "s": {"type": "string", "pattern": "^[xy]{1,2}$"}}})");
  ASSERT_TRUE(schema.ok());
  const ActionAutomaton a(*schema);
  const std::string alphabet = "-0123456789abcxy\", }{";
  // Reachable states by BFS over bytes, from the start, through the integer.
  std::vector<std::pair<std::string, GrammarState>> states{{"", a.Start()}};
  for (size_t i = 0; i < states.size() && states.size() < 3000; ++i) {
    for (char c : std::string("{\"n\": -0123456789,eabcsxy}")) {
      GrammarState t = states[i].second;
      if (a.Advance(&t, static_cast<uint8_t>(c)) >= 0 && states[i].first.size() < 14) {
        states.emplace_back(states[i].first + c, t);
      }
    }
  }
  ASSERT_GT(states.size(), 500u);
  std::map<std::tuple<int32_t, int32_t, int64_t, uint32_t>, std::set<std::string>> by_key;
  const std::vector<std::string> tails = AllStrings("0123456789,", 3);
  for (size_t i = 0; i < states.size(); i += 7) {
    const auto& [prefix, s] = states[i];
    // Completion: completes, and nothing shorter from the alphabet does.
    const std::string c = a.ShortestCompletion(s);
    GrammarState t = s;
    ASSERT_TRUE(a.AdvanceBytes(&t, c) && a.Complete(t)) << prefix << " + " << c;
    // Forced bytes: each is the only byte allowed at its point.
    GrammarState f = s;
    for (char byte : a.ForcedBytes(s)) {
      int allowed = 0;
      for (int b = 0; b < 256; ++b) {
        GrammarState u = f;
        allowed += a.Advance(&u, static_cast<uint8_t>(b)) >= 0;
      }
      ASSERT_EQ(allowed, 1) << prefix;
      ASSERT_GE(a.Advance(&f, static_cast<uint8_t>(byte)), 0);
    }
    // The language of short continuations is a function of the key.
    std::string lang;
    for (const std::string& tail : tails) {
      GrammarState u = s;
      lang += a.AdvanceBytes(&u, tail) ? '1' : '0';
    }
    const GrammarState k = a.Key(s);
    by_key[{k.seg, k.pos, k.value, k.flags}].insert(lang);
  }
  for (const auto& [key, langs] : by_key) EXPECT_EQ(langs.size(), 1u);
  // Shortest completion from the start is minimal: brute force over texts of that length - 1.
  EXPECT_EQ(a.ShortestCompletion(a.Start()), R"({"n": 0, "e": "b", "s": "x"})");
}

// Forced bytes never cut into a value being generated: a number that may still grow, a string
// below its maximum, an enum value with a longer sibling; they start only where the value must end.
TEST(ActionAutomatonTest, ForcedBytesNeverChangeAValueBeingGenerated) {
  auto schema = ParseActionSchema(R"({"type": "object", "properties": {
      "n": {"type": "integer", "minimum": 0, "maximum": 100},
      "e": {"enum": ["l", "left"]}, "s": {"type": "string", "maxLength": 3}}})");
  ASSERT_TRUE(schema.ok());
  const ActionAutomaton a(*schema);
  auto forced_after = [&](const std::string& prefix) {
    GrammarState s = a.Start();
    EXPECT_TRUE(a.AdvanceBytes(&s, prefix)) << prefix;
    return a.ForcedBytes(s);
  };
  EXPECT_EQ(forced_after(""), "{\"n\": ");
  EXPECT_EQ(forced_after("{\"n\": 1"), "");      // 1, 10..19, 100 or the end
  EXPECT_EQ(forced_after("{\"n\": 10"), "");     // 10 or 100
  // Nothing can follow 100 or 0 (no leading zeros); both enum values start with "l".
  EXPECT_EQ(forced_after("{\"n\": 100"), ", \"e\": \"l");
  EXPECT_EQ(forced_after("{\"n\": 0"), ", \"e\": \"l");
  EXPECT_EQ(forced_after("{\"n\": 5, \"e\": \"l"), "");       // "l" or "left"
  EXPECT_EQ(forced_after("{\"n\": 5, \"e\": \"le"), "ft\", \"s\": \"");
  EXPECT_EQ(forced_after("{\"n\": 5, \"e\": \"l\", \"s\": \"ab"), "");  // one more or the end
  EXPECT_EQ(forced_after("{\"n\": 5, \"e\": \"l\", \"s\": \"abc"), "\"}");
}

// ---- token masks against brute force ----

std::vector<uint32_t> BruteForceMask(const ActionAutomaton& a, const TokenTrie& trie,
                                     const GrammarState& s) {
  std::vector<uint32_t> mask(MaskWords(trie.vocab_size()), 0);
  for (int32_t id = 0; id < trie.vocab_size(); ++id) {
    const std::string& b = trie.bytes(id);
    GrammarState t = s;
    if (!b.empty() && a.AdvanceBytes(&t, b)) mask[id >> 5] |= 1u << (id & 31);
  }
  return mask;
}


TEST(TokenMaskTest, EqualsBruteForceOnTheTinyAndTheGemmaVocabularies) {
  std::vector<std::unique_ptr<Tokenizer>> toks;
  auto tiny = Tokenizer::Load(FixturePath("decoder/pool16_six_layers/tokenizer.json"));
  ASSERT_TRUE(tiny.ok());
  toks.push_back(std::move(tiny).value());
  if (const std::string dir = SharedGemma3Dir(); !dir.empty()) {
    auto gemma = Tokenizer::Load(dir + "/tokenizer.json");
    ASSERT_TRUE(gemma.ok());
    toks.push_back(std::move(gemma).value());
  }
  auto custom = ParseActionSchema(R"({"type": "object", "properties": {
      "n": {"type": "integer", "minimum": -30, "maximum": 4500}, "ok": {"type": "boolean"},
      "w": {"type": "string", "maxLength": 5}}})");
  ASSERT_TRUE(custom.ok());
  for (const auto& tok : toks) {
    const auto vocab = static_cast<int64_t>(tok->size());
    for (const ActionSchema& schema : {DefaultActionSchema(), *custom}) {
      const ActionAutomaton a(schema);
      auto trie = TokenTrie::Build(*tok, vocab);
      // States along texts of the schema, byte by byte.
      const std::string texts[] = {
          R"({"button": "select", "reasoning": "wall ahead_2", "context": "navigation"})",
          R"({"n": -29, "ok": false, "w": "a{\"}"})", R"({"n": 4500, "ok": true, "w": ""})"};
      int checked = 0;
      for (const std::string& text : texts) {
        GrammarState s = a.Start();
        for (size_t i = 0; i <= text.size(); ++i) {
          if (i % (vocab > 10000 ? 9 : 1) == 0 && !a.Complete(s)) {
            std::vector<uint32_t> mask(MaskWords(vocab), 0);
            trie->AllowedTokens(a, s, mask.data());
            ASSERT_EQ(mask, BruteForceMask(a, *trie, s)) << text.substr(0, i);
            ++checked;
          }
          if (i == text.size() || a.Advance(&s, static_cast<uint8_t>(text[i])) < 0) break;
        }
      }
      EXPECT_GT(checked, 8);
    }
  }
}

// ---- matchers ----

struct Walk {
  std::vector<int32_t> ids;
  ActionAppend last;
};

// Samples uniformly among the allowed tokens until the action is complete.
Walk RandomAction(const std::shared_ptr<const ActionGrammar>& g, bool jump_forward,
                  int32_t budget, std::mt19937* rng, int64_t vocab) {
  ActionMatcher m(g, jump_forward);
  Walk w;
  ActionAppend a = m.Begin(budget);
  w.ids = a.tokens;
  while (!m.complete()) {
    const uint32_t* mask = m.mask();
    std::vector<int32_t> allowed;
    for (int32_t id = 0; id < vocab; ++id) {
      if (MaskAllows(mask, id)) allowed.push_back(id);
    }
    EXPECT_FALSE(allowed.empty());
    if (allowed.empty()) break;
    auto r = m.OnSample(allowed[(*rng)() % allowed.size()], -0.25f,
                        budget - static_cast<int32_t>(w.ids.size()));
    EXPECT_TRUE(r.ok());
    if (!r.ok()) break;
    w.ids.insert(w.ids.end(), r->tokens.begin(), r->tokens.end());
    w.last = *r;
  }
  EXPECT_EQ(m.forced_tokens() + m.sampled_tokens(), static_cast<int32_t>(w.ids.size()));
  return w;
}

TEST(ActionMatcherTest, RandomSamplesAlwaysEndValidWithinTheBudget) {
  auto tok = Tokenizer::Load(FixturePath("decoder/pool16_six_layers/tokenizer.json"));
  ASSERT_TRUE(tok.ok());
  const auto vocab = static_cast<int64_t>((*tok)->size());
  GrammarRegistry reg(**tok, vocab);
  auto custom = ParseActionSchema(R"({"type": "object", "properties": {
      "n": {"type": "integer", "minimum": -30, "maximum": 4500}, "ok": {"type": "boolean"},
      "w": {"type": "string", "maxLength": 40}}})");
  ASSERT_TRUE(custom.ok());
  std::mt19937 rng(1);
  for (const ActionSchema& schema : {DefaultActionSchema(), *NarrowButtons({"l", "left"}), *custom}) {
    auto g = reg.Get(schema);
    const int32_t shortest = g->shortest_action_tokens();
    ASSERT_GT(shortest, 5);
    for (int i = 0; i < 60; ++i) {
      const int32_t budget = shortest + (i % 4 == 0 ? 0 : static_cast<int32_t>(rng() % 40));
      const Walk w = RandomAction(g, i % 3 != 0, budget, &rng, vocab);
      ASSERT_LE(static_cast<int32_t>(w.ids.size()), budget);
      const std::string text = (*tok)->Decode(w.ids, false);
      EXPECT_TRUE(Accepts(g->automaton(), text)) << text;
      auto j = nlohmann::json::parse(text, nullptr, false);
      ASSERT_TRUE(j.is_object()) << text;
      EXPECT_EQ(j.size(), schema.properties.size());
    }
  }
  EXPECT_EQ(reg.compiles(), 3u);
}

TEST(ActionMatcherTest, JumpForwardRetokenizesTheSampleWithTheForcedText) {
  const std::string dir = SharedGemma3Dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/gemma3 is absent";
  auto tok = Tokenizer::Load(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok());
  GrammarRegistry reg(**tok, static_cast<int64_t>((*tok)->size()));
  auto g = reg.Get(DefaultActionSchema());
  const std::string want = R"({"button": "right", "reasoning": "clear_path", "context": "navigation"})";
  auto canonical = g->Tokenize(want);
  // Sample the canonical tokens where there is a choice, except "ri" for "right" and "na" for
  // "navigation": jump-forward must still give the canonical tokens.
  ActionMatcher m(g, true);
  std::vector<int32_t> ids = m.Begin(64).tokens;
  EXPECT_EQ(ids, std::vector<int32_t>(canonical.begin(), canonical.begin() + 4));  // {"button": "
  auto sample = [&](const std::string& piece) {
    auto t = g->Tokenize(piece);
    ASSERT_EQ(t.size(), 1u) << piece;
    ASSERT_TRUE(MaskAllows(m.mask(), t[0])) << piece;
    auto r = m.OnSample(t[0], -0.1f, 64 - static_cast<int32_t>(ids.size()));
    ASSERT_TRUE(r.ok());
    ids.insert(ids.end(), r->tokens.begin(), r->tokens.end());
  };
  sample("ri");
  sample("clear");
  sample("_");
  sample("path");
  sample("\",");
  sample("na");
  EXPECT_TRUE(m.complete());
  EXPECT_EQ((*tok)->Decode(ids, false), want);
  EXPECT_EQ(ids, canonical);
  EXPECT_EQ(m.values(), (std::vector<std::string>{"right", "clear_path", "navigation"}));
  EXPECT_EQ(m.sampled_tokens(), 6);
  EXPECT_EQ(m.forced_tokens(), static_cast<int32_t>(ids.size()) - 6);
  EXPECT_FLOAT_EQ(m.confidence(), std::exp(-0.1f));
  EXPECT_FLOAT_EQ(m.logprob(), -0.6f);
}

TEST(ActionMatcherTest, ASampleTheBudgetCannotFinishIsReplacedByTheShortestCompletion) {
  auto tok = Tokenizer::Load(FixturePath("decoder/pool16_six_layers/tokenizer.json"));
  ASSERT_TRUE(tok.ok());
  GrammarRegistry reg(**tok, static_cast<int64_t>((*tok)->size()));
  auto g = reg.Get(DefaultActionSchema());
  const int32_t budget = g->shortest_action_tokens();
  ActionMatcher m(g, true);
  std::vector<int32_t> ids = m.Begin(budget).tokens;
  // Pick the allowed token with the longest bytes (a long button name) at every choice.
  while (!m.complete()) {
    int32_t best = -1;
    for (int32_t id = 0; id < static_cast<int32_t>((*tok)->size()); ++id) {
      if (MaskAllows(m.mask(), id) &&
          (best < 0 || g->trie().bytes(id).size() > g->trie().bytes(best).size()))
        best = id;
    }
    auto r = m.OnSample(best, -1.f, budget - static_cast<int32_t>(ids.size()));
    ASSERT_TRUE(r.ok());
    ids.insert(ids.end(), r->tokens.begin(), r->tokens.end());
  }
  EXPECT_LE(static_cast<int32_t>(ids.size()), budget);
  EXPECT_TRUE(Accepts(g->automaton(), (*tok)->Decode(ids, false)));
}

TEST(ActionMatcherTest, ATokenOutsideTheMaskIsAnInternalError) {
  auto tok = Tokenizer::Load(FixturePath("decoder/pool16_six_layers/tokenizer.json"));
  ASSERT_TRUE(tok.ok());
  GrammarRegistry reg(**tok, static_cast<int64_t>((*tok)->size()));
  ActionMatcher m(reg.Get(DefaultActionSchema()), true);
  m.Begin(64);
  const int32_t brace = reg.Get(DefaultActionSchema())->Tokenize("}")[0];
  EXPECT_FALSE(MaskAllows(m.mask(), brace));
  auto r = m.OnSample(brace, 0.f, 60);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace vlmserve
