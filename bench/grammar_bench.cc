// The action grammar's costs on a real vocabulary, as JSON: building the token trie, compiling a
// schema, an allowed-token mask computed cold (a state's first visit) and the per-token work of a
// matcher once its states are cached (mask lookup + taking a sample + jump-forward), along random
// actions (uniform over the allowed tokens: a worst case for string lengths). Issue 19's aims:
// ≤ 10 µs per token at 262 k, compile ≤ 50 ms and ≤ 50 MB per schema.
//
//   vlmserve_bench_grammar --tokenizer ../shared/gemma3/tokenizer.json [--actions 200]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/grammar/action_grammar.h"
#include "kernels/cpu/sample.h"

using Clock = std::chrono::steady_clock;

namespace {

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

nlohmann::json Percentiles(std::vector<double> v) {
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  return {{"n", v.size()}, {"p50_us", at(0.5)}, {"p90_us", at(0.9)}, {"p99_us", at(0.99)},
          {"max_us", v.back()}};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace vlmserve;
  std::string tok_path;
  int actions = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokenizer")) tok_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--actions")) actions = std::max(1, std::atoi(argv[i + 1]));
  }
  if (tok_path.empty()) {
    std::fprintf(stderr, "usage: %s --tokenizer FILE [--actions N]\n", argv[0]);
    return 2;
  }
  auto tok = Tokenizer::Load(tok_path);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  const auto vocab = static_cast<int64_t>((*tok)->size());
  nlohmann::json out = {{"tokenizer", tok_path}, {"vocab", vocab}};

  auto t0 = Clock::now();
  GrammarRegistry reg(**tok, vocab);
  out["trie_build_ms"] = Us(Clock::now() - t0) / 1000;
  out["trie_nodes"] = reg.trie().nodes();

  const std::string custom_text = R"({"type": "object", "properties": {
      "move": {"enum": ["north", "south", "east", "west", "wait"]},
      "steps": {"type": "integer", "minimum": -5, "maximum": 250},
      "run": {"type": "boolean"}, "why": {"type": "string", "maxLength": 24}}})";
  struct Case {
    const char* name;
    ActionSchema schema;
  };
  std::vector<Case> cases = {{"default", DefaultActionSchema()},
                             {"custom", *ParseActionSchema(custom_text)}};
  for (Case& c : cases) {
    t0 = Clock::now();
    auto g = reg.Get(c.schema);
    const double compile_ms = Us(Clock::now() - t0) / 1000;
    const size_t bytes_before = reg.masks().bytes();
    std::vector<double> cold, warm_token;
    std::mt19937 rng(42);
    int64_t tokens = 0, sampled = 0;
    // Pass 1 fills the caches (the cold mask times); pass 2 repeats the same walks warm.
    for (int pass = 0; pass < 2; ++pass) {
      rng.seed(42);
      for (int a = 0; a < actions; ++a) {
        ActionMatcher m(g, true);
        int32_t used = static_cast<int32_t>(m.Begin(96).tokens.size());
        while (!m.complete()) {
          const uint64_t misses = reg.masks().misses();
          const auto t_mask = Clock::now();
          const uint32_t* mask = m.mask();
          const double mask_us = Us(Clock::now() - t_mask);
          std::vector<int32_t> allowed;
          for (int32_t id = 0; id < vocab; ++id) {
            if (MaskAllows(mask, id)) allowed.push_back(id);
          }
          const int32_t pick = allowed[rng() % allowed.size()];
          const auto t_take = Clock::now();
          auto plan = m.OnSample(pick, -1.f, 96 - used);
          const double take_us = Us(Clock::now() - t_take);
          if (!plan.ok()) return 1;
          used += static_cast<int32_t>(plan->tokens.size());
          if (reg.masks().misses() != misses) cold.push_back(mask_us);  // computed, not found
          if (pass == 1) {
            warm_token.push_back(mask_us + take_us);
            tokens += static_cast<int64_t>(plan->tokens.size());
            ++sampled;
          }
        }
      }
    }
    out["schemas"][c.name] = {
        {"compile_ms", compile_ms},
        {"shortest_action_tokens", g->shortest_action_tokens()},
        {"mask_cold", Percentiles(cold)},
        {"per_token_warm", Percentiles(warm_token)},
        {"mask_cache_mb", (reg.masks().bytes() - bytes_before) / 1048576.0},
        {"tokens_per_action", static_cast<double>(tokens) / actions},
        {"sampled_per_action", static_cast<double>(sampled) / actions}};
  }
  // What an engine does at load for the default schema: every choice state's mask.
  {
    GrammarRegistry fresh(**tok, vocab);
    auto g = fresh.Get(DefaultActionSchema());
    t0 = Clock::now();
    const size_t n = g->PrecomputeMasks(/*jump_forward=*/true, 512);
    out["default_precompute"] = {{"states", n},
                                 {"ms", Us(Clock::now() - t0) / 1000},
                                 {"mask_cache_mb", fresh.masks().bytes() / 1048576.0}};
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
