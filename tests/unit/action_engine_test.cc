// Actions through the engine on the real CPU runner of the tiny random checkpoints (which would
// otherwise emit garbage): every sampled action is valid at temperature 1 and 2, with the default,
// a narrowed and a custom schema and with the tightest budgets; a request equals itself run alone
// when 16 run batched; jump-forward's multi-token steps give bitwise the logits of one token per
// step; the A/B of jump-forward against plain masked decoding is measured and explained.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/serve_engine.h"
#include "model/runner_factory.h"
#include "tests/support/step_driver.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using namespace std::chrono_literals;

const char* kModels[] = {"pool16_six_layers", "gqa2_two_images", "gqa4_pan_scan_runtime_names"};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ServeRequest ActionRequest(const std::string& model, int i) {
  ServeRequest r;
  r.request_id = "a" + std::to_string(i);
  ImageBytes grid;
  grid.bytes = ReadAll(testing::FixturePath("decoder/" + model + "/image0.png"));
  r.images.grid = std::move(grid);
  static const char* prompts[] = {"Pick a move.", "What now?", "Go to the door.",
                                  "Choose an action for this screen.", "play", "Next step?"};
  r.prompt = prompts[i % 6] + std::string(static_cast<size_t>(i / 6), '!');
  r.max_new_tokens = 96;
  return r;
}

std::unique_ptr<ServeEngine> LoadEngine(const std::string& model, EngineOptions o = {}) {
  auto e = ServeEngine::Load(testing::FixturePath("decoder/" + model), "cpu", std::move(o));
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

// The result is one object of the schema, parsed by the grammar into the action it reports, and
// its tokens decode to its text.
void ExpectValidAction(ServeEngine& engine, const ServeRequest& r, const ServeResult& out,
                       const ActionGrammar& g) {
  GrammarState s = g.automaton().Start();
  EXPECT_TRUE(g.automaton().AdvanceBytes(&s, out.text) && g.automaton().Complete(s)) << out.text;
  auto j = nlohmann::json::parse(out.text, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out.text;
  ASSERT_EQ(j.size(), g.schema().properties.size());
  for (const SchemaProperty& p : g.schema().properties) {
    ASSERT_TRUE(j.contains(p.name));
    const std::string text = j[p.name].is_string() ? j[p.name].get<std::string>() : j[p.name].dump();
    EXPECT_EQ(out.action.fields.at(p.name), text);
  }
  if (j.contains("button")) {
    EXPECT_EQ(out.action.button, j["button"]);
  }
  EXPECT_EQ(out.finish, FinishReason::kStop);
  EXPECT_LE(static_cast<int32_t>(out.tokens.size()), r.max_new_tokens);
  EXPECT_EQ(out.forced_tokens + out.sampled_tokens, static_cast<int32_t>(out.tokens.size()));
  EXPECT_EQ(engine.grammars().trie().vocab_size(), engine.info().vocab_size);
  std::string decoded;
  for (int32_t t : out.tokens) decoded += engine.grammars().trie().bytes(t);
  EXPECT_EQ(decoded, out.text);
  EXPECT_GT(out.action.confidence, 0.f);
  EXPECT_LE(out.action.confidence, 1.f);
  EXPECT_LE(out.action.logprob, 0.f);
}

TEST(ActionEngineTest, EverySampledActionIsValidAtTemperatureOneAndTwo) {
  const std::string custom = R"({"type": "object", "properties": {
      "move": {"enum": ["north", "south", "east", "west", "wait"]},
      "steps": {"type": "integer", "minimum": -5, "maximum": 250},
      "run": {"type": "boolean"},
      "why": {"type": "string", "maxLength": 12, "pattern": "^[a-z ]*$"}}})";
  int checked = 0;
  for (const char* model : kModels) {
    auto engine = LoadEngine(model);
    ASSERT_TRUE(engine);
    for (int i = 0; i < 12; ++i) {
      ServeRequest r = ActionRequest(model, i);
      r.sampling.temperature = i % 2 ? 2.0f : 1.0f;
      r.sampling.seed = 1000 + static_cast<uint64_t>(i);
      if (i % 3 == 1) r.allowed_buttons = {"up", "down", "a"};
      if (i % 3 == 2) r.action_schema = custom;
      auto g = engine->GrammarFor(r);
      ASSERT_TRUE(g.ok()) << g.status().ToString();
      // Every fourth request gets the tightest budget: the shortest action's tokens.
      if (i % 4 == 0) r.max_new_tokens = (*g)->shortest_action_tokens();
      auto out = engine->RunNow(r);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      ExpectValidAction(*engine, r, *out, **g);
      if (!r.allowed_buttons.empty()) {
        EXPECT_TRUE(out->action.button == "up" || out->action.button == "down" ||
                    out->action.button == "a")
            << out->text;
      }
      ++checked;
    }
    // One token short of the shortest action is refused before any work.
    ServeRequest tight = ActionRequest(model, 0);
    tight.max_new_tokens = (*engine->GrammarFor(tight))->shortest_action_tokens() - 1;
    auto refused = engine->RunNow(tight);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(refused.status().message().find("cannot fit the shortest valid action"),
              std::string::npos);
  }
  EXPECT_EQ(checked, 36);
}

TEST(ActionEngineTest, BadSchemasAndMisusedOptionsAreInvalidArgument) {
  auto engine = LoadEngine("pool16_six_layers");
  ASSERT_TRUE(engine);
  const std::pair<std::function<void(ServeRequest&)>, const char*> cases[] = {
      {[](ServeRequest& r) { r.action_schema = "{\"type\": \"object\"}"; }, "properties"},
      {[](ServeRequest& r) { r.action_schema = "not json"; }, "not valid JSON"},
      {[](ServeRequest& r) { r.allowed_buttons = {"jump"}; }, "not a button"},
      {[](ServeRequest& r) {
         r.allowed_buttons = {"a"};
         r.action_schema = R"({"type": "object", "properties": {"a": {"type": "boolean"}}})";
       },
       "cannot be used with action_schema"},
      {[](ServeRequest& r) {
         r.output_mode = OutputMode::kText;
         r.allowed_buttons = {"a"};
       },
       "needs the action output mode"},
  };
  for (const auto& [edit, want] : cases) {
    ServeRequest r = ActionRequest("pool16_six_layers", 0);
    edit(r);
    auto out = engine->RunNow(r);
    ASSERT_FALSE(out.ok()) << want;
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find(want), std::string::npos) << out.status().message();
  }
}

// 16 concurrent sampled action requests (continuous batching, a small step budget so that not
// every row runs in every step, and preemption from a small KV cache) produce exactly the tokens
// each produces alone: forced runs are never lost for a sequence left out of a step.
TEST(ActionEngineTest, SixteenBatchedActionsEqualEachAlone) {
  const std::string model = "pool16_six_layers";
  auto alone = LoadEngine(model);
  EngineOptions o;
  o.step_token_budget = 24;  // raised to hold one image; decode rows then crowd each other
  o.kv_cache_tokens = 16 * 40;
  auto batched = LoadEngine(model, o);
  ASSERT_TRUE(alone && batched);
  std::vector<ServeRequest> reqs;
  std::vector<ServeResult> want;
  for (int i = 0; i < 16; ++i) {
    ServeRequest r = ActionRequest(model, i);
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 77 + static_cast<uint64_t>(i);
    r.logprobs = 2;
    auto out = alone->RunNow(r);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    reqs.push_back(r);
    want.push_back(*out);
  }
  struct Sink : ResponseSink {
    std::mutex mu;
    std::vector<int32_t> ids;
    std::vector<TokenLogprob> lps;
    std::optional<ServeResult> result;
    std::atomic<bool> done{false};
    void OnDelta(OutputDelta d) override {
      std::lock_guard<std::mutex> l(mu);
      ids.insert(ids.end(), d.ids.begin(), d.ids.end());
      lps.insert(lps.end(), d.logprobs.begin(), d.logprobs.end());
    }
    void OnResult(ServeResult r) override {
      std::lock_guard<std::mutex> l(mu);
      result = std::move(r);
      done = true;
    }
    void OnError(Status s) override {
      ADD_FAILURE() << s.ToString();
      done = true;
    }
  };
  batched->Start();
  std::vector<std::shared_ptr<Sink>> sinks;
  for (const ServeRequest& r : reqs) {
    sinks.push_back(std::make_shared<Sink>());
    ASSERT_TRUE(batched->Submit(std::make_shared<ServeRequest>(r), sinks.back(), nullptr).ok());
  }
  for (auto& s : sinks) {
    for (int i = 0; i < 6000 && !s->done; ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(s->done);
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    std::lock_guard<std::mutex> l(sinks[i]->mu);
    ASSERT_TRUE(sinks[i]->result);
    EXPECT_EQ(sinks[i]->result->tokens, want[i].tokens) << i;
    EXPECT_EQ(sinks[i]->result->text, want[i].text);
    EXPECT_EQ(sinks[i]->ids, want[i].tokens) << "streamed = result";
    EXPECT_FLOAT_EQ(sinks[i]->result->action.confidence, want[i].action.confidence);
    // Logprobs: one per token; forced ones flagged; sampled ones with 2 alternatives, the best
    // first and at least as likely as the sample.
    ASSERT_EQ(sinks[i]->lps.size(), sinks[i]->ids.size());
    int sampled = 0;
    float sum = 0;
    for (const TokenLogprob& lp : sinks[i]->lps) {
      if (lp.forced) continue;
      ++sampled;
      sum += lp.logprob;
      ASSERT_EQ(lp.top.size(), 2u);
      EXPECT_GE(lp.top[0].second, lp.logprob);
      EXPECT_GE(lp.top[0].second, lp.top[1].second);
    }
    EXPECT_EQ(sampled, want[i].sampled_tokens);
    EXPECT_NEAR(sum, want[i].action.logprob, 1e-4);
  }
  const EngineStats st = batched->stats();
  std::printf("16 batched actions: %llu steps, at most %llu rows, %llu preemptions\n",
              static_cast<unsigned long long>(st.steps), static_cast<unsigned long long>(st.max_rows),
              static_cast<unsigned long long>(st.preemptions));
  EXPECT_GT(st.max_rows, 1u);
  EXPECT_GT(st.forced_tokens, 0u);
  EXPECT_EQ(st.forced_tokens + st.sampled_tokens, st.generated_tokens);
  batched->Stop();
}

// Jump-forward's mechanism on the runner: an action generated with forced multi-token rows, then
// the same ids fed one per step to a second sequence: the next-token logits after every forced
// run are bitwise equal, and the ids decode to exactly the action's bytes.
TEST(ActionEngineTest, ForcedRunsGiveTheLogitsOfOneTokenPerStep) {
  auto dir = ModelDir::Load(testing::FixturePath("decoder/gqa4_pan_scan_runtime_names"));
  ASSERT_TRUE(dir.ok());
  auto runner = CreateModelRunner(*dir, "cpu", {});
  ASSERT_TRUE(runner.ok());
  const int64_t vocab = dir->config.text.vocab_size;
  GrammarRegistry reg(*dir->tokenizer, vocab);
  auto g = reg.Get(DefaultActionSchema());
  auto prompt = dir->tokenizer->Encode(
      "<bos><start_of_turn>user\nPick a move.<end_of_turn>\n<start_of_turn>model\n");
  ASSERT_TRUE(prompt.ok());
  testing::StepDriver d(**runner);
  ActionMatcher m(g, true);
  std::vector<int32_t> ids = *prompt;
  const size_t prompt_len = ids.size();
  const ActionAppend begin = m.Begin(64);
  ids.insert(ids.end(), begin.tokens.begin(), begin.tokens.end());
  std::map<size_t, std::vector<float>> after_run;  // sequence length → next-token logits
  StepRow first = d.Row(1, ids, LogitsMode::kLast);
  first.allowed = m.mask();
  auto out = d.Run({first});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  after_run[ids.size()] = (*out)[0].logits;
  int forced_runs = 0;
  while (!m.complete()) {
    const StepOutput& o = (*out)[0];
    auto plan = m.OnSample(o.token, o.logprob, 64 - static_cast<int32_t>(ids.size() - prompt_len));
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    const size_t at = ids.size();
    ids.insert(ids.end(), plan->tokens.begin(), plan->tokens.end());
    if (plan->complete) break;
    forced_runs += plan->tokens.size() > 1;
    StepRow row = d.Row(1, std::span<const int32_t>(ids).subspan(at), LogitsMode::kLast);
    row.allowed = m.mask();
    out = d.Run({row});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    after_run[ids.size()] = (*out)[0].logits;
  }
  EXPECT_GE(forced_runs, 1);
  const std::vector<int32_t> generated(ids.begin() + static_cast<long>(prompt_len), ids.end());
  const std::string text = dir->tokenizer->Decode(generated, false);
  GrammarState s = g->automaton().Start();
  EXPECT_TRUE(g->automaton().AdvanceBytes(&s, text) && g->automaton().Complete(s)) << text;
  // The same ids, one per step (the prompt as one prefill).
  auto p2 = d.Run({d.Row(2, *prompt, LogitsMode::kLast)});
  ASSERT_TRUE(p2.ok());
  size_t compared = 0;
  for (size_t n = prompt_len; n < ids.size(); ++n) {
    auto step = d.Extend(2, std::span<const int32_t>(&ids[n], 1), false);
    ASSERT_TRUE(step.ok());
    if (auto it = after_run.find(n + 1); it != after_run.end()) {
      ASSERT_EQ(it->second.size(), step->logits.size());
      EXPECT_EQ(std::memcmp(it->second.data(), step->logits.data(), it->second.size() * 4), 0)
          << "after " << n + 1 << " tokens";
      ++compared;
    }
  }
  EXPECT_EQ(compared, after_run.size());  // every run's end, the prefill's included
}

// Greedy, jump-forward against plain masked decoding (every token sampled), on many prompts of
// the three tiny models: both always valid; how often the actions differ is printed (and recorded
// in bench/results): they may, because without jump-forward the model also picks the tokens of
// the forced text — under the mask any tokenization of `{"button": "` is allowed, e.g. `{`, `"`
// — and a different token sequence is a different context for every later choice.
TEST(ActionEngineTest, JumpForwardAgainstMaskedDecodingIsMeasured) {
  int same = 0, differ = 0, noncanonical = 0, same_button = 0, steered = 0, steps_jf = 0, steps_plain = 0, total = 0;
  for (const char* model : kModels) {
    EngineOptions off;
    off.jump_forward = false;
    auto jf = LoadEngine(model), plain = LoadEngine(model, off);
    ASSERT_TRUE(jf && plain);
    for (int i = 0; i < 20; ++i) {
      ServeRequest r = ActionRequest(model, i);
      auto a = jf->RunNow(r), b = plain->RunNow(r);
      ASSERT_TRUE(a.ok() && b.ok());
      auto g = jf->GrammarFor(r);
      ExpectValidAction(*jf, r, *a, **g);
      ExpectValidAction(*plain, r, *b, **g);
      // Without jump-forward nothing is forced, unless the budget ran short and the shortest
      // completion closed the object (the random models write long strings a byte at a time).
      if (b->forced_tokens > 0) {
        ++steered;
        EXPECT_GE(static_cast<int32_t>(b->tokens.size()) + (*g)->shortest_action_tokens(),
                  r.max_new_tokens);
      }
      steps_jf += a->sampled_tokens;
      steps_plain += b->sampled_tokens;
      ++total;
      same_button += a->action.button == b->action.button;
      if (a->text == b->text) {
        ++same;
      } else {
        ++differ;
        // Did plain decoding tokenize its text differently from the tokenizer?
        if ((*g)->Tokenize(b->text) != b->tokens) ++noncanonical;
      }
    }
  }
  std::printf(
      "jump-forward A/B over %d greedy actions: %d same, %d different (%d of those decoded "
      "without jump-forward in a non-canonical tokenization), %d with the same button; model "
      "passes per action: %.2f with jump-forward, %.2f without (%d closed by the budget)\n",
      total, same, differ, noncanonical, same_button, double(steps_jf) / total,
      double(steps_plain) / total, steered);
  EXPECT_LT(steps_jf, steps_plain);
}

}  // namespace
}  // namespace vlmserve
