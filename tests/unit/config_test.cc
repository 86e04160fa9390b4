// config.json → Gemma3Config against transformers: every fixture in tests/fixtures/configs was
// resolved by transformers 5.17 (tools/golden/make_config_fixtures.py, the versions are inside each
// .expected.json), and our resolution and parameter counts must equal it. Then the rejection table:
// each bad config gets its own error naming the field.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/weights/config_json.h"
#include "model/weights/model_stats.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;
using vlmserve::testing::FixturePath;

json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

std::vector<std::string> LayerTypeNames(const Gemma3TextConfig& t) {
  std::vector<std::string> out;
  for (LayerType l : t.layer_types) out.push_back(LayerTypeName(l));
  return out;
}

void ExpectRope(const RopeParams& got, const json& want, const std::string& what) {
  EXPECT_EQ(RopeTypeName(got.type), want["rope_type"].get<std::string>()) << what;
  EXPECT_DOUBLE_EQ(got.theta, want["rope_theta"].get<double>()) << what;
  EXPECT_DOUBLE_EQ(got.factor, want["factor"].get<double>()) << what;
}

class ConfigFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ConfigFixtureTest, ResolvesAndCountsLikeTransformers) {
  const std::string name = GetParam();
  auto config = LoadGemma3Config(FixturePath("configs/" + name + ".json"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const json want = ReadJson(FixturePath("configs/" + name + ".expected.json"));
  const Gemma3Config& c = *config;
  const Gemma3TextConfig& t = c.text;
  const json& wt = want["text"];

  EXPECT_EQ(!c.has_vision, want["text_only"].get<bool>());
  EXPECT_EQ(t.vocab_size, wt["vocab_size"]);
  EXPECT_EQ(t.hidden_size, wt["hidden_size"]);
  EXPECT_EQ(t.intermediate_size, wt["intermediate_size"]);
  EXPECT_EQ(t.num_hidden_layers, wt["num_hidden_layers"]);
  EXPECT_EQ(t.num_attention_heads, wt["num_attention_heads"]);
  EXPECT_EQ(t.num_key_value_heads, wt["num_key_value_heads"]);
  EXPECT_EQ(t.head_dim, wt["head_dim"]);
  EXPECT_DOUBLE_EQ(t.query_pre_attn_scalar, wt["query_pre_attn_scalar"].get<double>());
  EXPECT_DOUBLE_EQ(t.rms_norm_eps, wt["rms_norm_eps"].get<double>());
  EXPECT_EQ(t.sliding_window, wt["sliding_window"]);
  EXPECT_EQ(t.max_position_embeddings, wt["max_position_embeddings"]);
  EXPECT_EQ(t.attention_bias, wt["attention_bias"].get<bool>());
  EXPECT_EQ(t.hidden_activation, wt["hidden_activation"].get<std::string>());
  EXPECT_EQ(LayerTypeNames(t), wt["layer_types"].get<std::vector<std::string>>());
  EXPECT_EQ(t.tie_word_embeddings, want["tie_word_embeddings"].get<bool>());
  ExpectRope(t.rope_sliding, wt["rope_sliding"], "sliding");
  if (name == "tiny-v4-style") {
    // The one deliberate difference (config.cc, ResolveRope): this 4.5x-style file says
    // rope_scaling {"type": "linear", "factor": 4}; transformers 5.17 keeps rope_type "default"
    // and drops the factor (with a warning), 4.5x applied it. We apply it.
    ASSERT_EQ(wt["rope_full"]["rope_type"], "default") << "transformers changed: revisit this case";
    EXPECT_EQ(t.rope_full.type, RopeType::kLinear);
    EXPECT_DOUBLE_EQ(t.rope_full.factor, 4.0);
    EXPECT_DOUBLE_EQ(t.rope_full.theta, wt["rope_full"]["rope_theta"].get<double>());
  } else {
    ExpectRope(t.rope_full, wt["rope_full"], "full");
  }
  if (c.has_vision) {
    const json& wv = want["vision"];
    EXPECT_EQ(c.vision.hidden_size, wv["hidden_size"]);
    EXPECT_EQ(c.vision.intermediate_size, wv["intermediate_size"]);
    EXPECT_EQ(c.vision.num_hidden_layers, wv["num_hidden_layers"]);
    EXPECT_EQ(c.vision.num_attention_heads, wv["num_attention_heads"]);
    EXPECT_EQ(c.vision.num_channels, wv["num_channels"]);
    EXPECT_EQ(c.vision.image_size, wv["image_size"]);
    EXPECT_EQ(c.vision.patch_size, wv["patch_size"]);
    EXPECT_DOUBLE_EQ(c.vision.layer_norm_eps, wv["layer_norm_eps"].get<double>());
    EXPECT_EQ(c.vision.use_head, wv["use_head"].get<bool>());
    EXPECT_EQ(c.mm_tokens_per_image, want["mm_tokens_per_image"]);
  }

  auto counts = CountParameters(c);
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  const json& wp = want["params"];
  EXPECT_EQ(counts->language_model, wp["language_model"].get<uint64_t>());
  EXPECT_EQ(counts->lm_head, wp["lm_head"].get<uint64_t>());
  EXPECT_EQ(counts->total, wp["total"].get<uint64_t>());
  if (c.has_vision) {
    EXPECT_EQ(counts->vision_tower, wp["vision_tower"].get<uint64_t>());
    EXPECT_EQ(counts->projector, wp["projector"].get<uint64_t>());
  }
}

INSTANTIATE_TEST_SUITE_P(Transformers, ConfigFixtureTest,
                         ::testing::Values("gemma3-4b-it", "gemma3-12b", "gemma3-27b",
                                           "gemma3-1b-text", "tiny-v5-saved", "tiny-v4-style",
                                           "tiny-text-untied"),
                         [](const auto& param_info) {
                           std::string s = param_info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

// The published 4B numbers of spec §1.1, §10.1, §9.3 and §15, independent of transformers.
TEST(ConfigTest, Published4BMatchesSpec) {
  auto c = LoadGemma3Config(FixturePath("configs/gemma3-4b-it.json"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto p = CountParameters(*c);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->total, 4'300'079'472u);
  EXPECT_EQ(p->vision_tower, 416'866'032u);
  EXPECT_EQ(p->projector, 2'950'272u);
  EXPECT_EQ(p->language_model, 3'880'263'168u);
  EXPECT_EQ(p->embedding, 671'252'480u);
  EXPECT_EQ(p->lm_head, 0u);
  std::vector<int64_t> globals;
  for (size_t i = 0; i < c->text.layer_types.size(); ++i)
    if (c->text.layer_types[i] == LayerType::kFullAttention) globals.push_back(int64_t(i));
  EXPECT_EQ(globals, (std::vector<int64_t>{5, 11, 17, 23, 29}));
  EXPECT_EQ(c->text.sliding_window, 1024);
  EXPECT_DOUBLE_EQ(c->text.AttentionScale(), 0.0625);
  EXPECT_EQ(c->vision.num_patches(), 4096);
  EXPECT_EQ(c->pool_kernel(), 4);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{1, 106}));
  EXPECT_EQ(c->image_token_id, 262144);
  EXPECT_EQ(c->boi_token_id, 255999);
  EXPECT_EQ(c->dtype, "bfloat16");

  auto m = EstimateMemory(*c);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->weights_bf16_bytes, 8'600'158'944u);   // the hub index's total_size
  EXPECT_EQ(m->kv_bytes_per_token_per_layer, 4096u);  // 2 · 4 kv heads · 256 · 2 bytes
  EXPECT_EQ(m->kv_bytes_per_token, 139'264u);         // × 34 layers = 136 KiB
  // fp8: linear matrices from spec §10.1 — SigLIP 27 × (4·1152² + 2·1152·4304) + conv 1152·588,
  // projector 1152·2560, LM 34 × (15,728,640 attention + 78,643,200 MLP) — in 1 byte, rest bf16.
  const uint64_t linear = 27ull * (4 * 1152 * 1152 + 2 * 1152 * 4304) + 1152 * 588 + 1152 * 2560 +
                          34ull * (15'728'640 + 78'643'200);
  EXPECT_EQ(m->weights_fp8_bytes, linear + 2 * (4'300'079'472ull - linear));
  // KV for 4096 tokens: 5 global layers keep 4096, 29 sliding layers keep 1024.
  auto kv = KvCacheBytes(*c, 4096);
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(*kv, (5ull * 4096 + 29ull * 1024) * 4096);
}

// The committed copy of the published config is the file in ../shared (when it is there).
TEST(ConfigTest, FixtureIsThePublishedFile) {
  const std::string shared = vlmserve::testing::SharedGemma3Dir();
  if (shared.empty()) GTEST_SKIP() << "../shared/gemma3 not found (set VLMSERVE_SHARED_DIR)";
  EXPECT_EQ(ReadJson(shared + "/config-4b-it.json"),
            ReadJson(FixturePath("configs/gemma3-4b-it.json")));
}

// ---- accepted variants --------------------------------------------------------------------

json Published4B() { return ReadJson(FixturePath("configs/gemma3-4b-it.json")); }

StatusOr<Gemma3Config> ParseJson(const json& j) { return ParseGemma3Config(j.dump(), "cfg.json"); }

TEST(ConfigTest, AcceptsLegacyRopeTypeKeyAndIdAliases) {
  json j = Published4B();
  j["text_config"]["rope_scaling"] = {{"type", "linear"}, {"factor", 8}};
  j.erase("image_token_index");
  j["image_token_id"] = 262144;
  j["boi_token_id"] = 255999;
  j["vision_config"]["image_size"] = {896, 896};
  auto c = ParseJson(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->text.rope_full.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(c->text.rope_full.factor, 8.0);
  EXPECT_EQ(c->image_token_id, 262144);
  EXPECT_EQ(c->vision.image_size, 896);
}

TEST(ConfigTest, RopeParametersFormOverridesLegacyFields) {
  json j = Published4B();
  j["text_config"].erase("rope_scaling");
  j["text_config"]["rope_theta"] = 5.0;  // superseded by rope_parameters below
  j["text_config"]["rope_parameters"] = {
      {"full_attention", {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 123456.0}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 777.0}}}};
  auto c = ParseJson(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->text.rope_full.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(c->text.rope_full.theta, 123456.0);
  EXPECT_DOUBLE_EQ(c->text.rope_full.factor, 2.0);
  EXPECT_DOUBLE_EQ(c->text.rope_sliding.theta, 777.0);
}

TEST(ConfigTest, AbsentTextConfigTakesClassDefaults) {
  json j = Published4B();
  j.erase("text_config");
  auto c = ParseJson(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->text.hidden_size, 2304);  // Gemma3TextConfig defaults (spec §1.4)
  EXPECT_EQ(c->text.num_hidden_layers, 26);
  EXPECT_EQ(c->text.sliding_window, 4096);
  EXPECT_EQ(c->text.rope_full.type, RopeType::kDefault);
}

// ---- rejections ---------------------------------------------------------------------------

struct BadConfig {
  const char* name;
  std::function<std::string()> text;  // the whole file
  StatusCode code;
  const char* message;  // a substring the error must contain
};

std::string Mutated(const std::function<void(json&)>& edit) {
  json j = Published4B();
  edit(j);
  return j.dump();
}

std::vector<BadConfig> BadConfigs() {
  const auto kInvalid = StatusCode::kInvalidArgument;
  const auto kUnimpl = StatusCode::kUnimplemented;
  return {
      {"not_json", [] { return std::string("{\"model_type\": \"gemma3\""); }, kInvalid,
       "invalid JSON"},
      {"empty_file", [] { return std::string(); }, kInvalid, "invalid JSON"},
      {"top_level_array", [] { return std::string("[1, 2]"); }, kInvalid,
       "top level: must be a JSON object"},
      {"invalid_utf8", [] { return std::string("{\"model_type\": \"gem\xff\"}"); }, kInvalid,
       "invalid JSON"},
      {"too_deep", [] { return std::string(200, '[') + std::string(200, ']'); }, kInvalid,
       "nested deeper than 16"},
      {"too_large",
       [] { return "{\"model_type\":\"gemma3\",\"pad\":\"" + std::string(2 << 20, 'x') + "\"}"; },
       kInvalid, "over the limit of 1048576"},
      {"missing_model_type", [] { return Mutated([](json& j) { j.erase("model_type"); }); },
       kInvalid, "model_type: is missing"},
      {"unknown_model_type", [] { return Mutated([](json& j) { j["model_type"] = "llama"; }); },
       kInvalid, "\"llama\" is not a Gemma 3 model"},
      {"wrong_text_model_type",
       [] { return Mutated([](json& j) { j["text_config"]["model_type"] = "gemma2"; }); }, kInvalid,
       "text_config.model_type"},
      {"text_config_not_object", [] { return Mutated([](json& j) { j["text_config"] = "big"; }); },
       kInvalid, "text_config: must be a JSON object"},
      {"hidden_size_zero",
       [] { return Mutated([](json& j) { j["text_config"]["hidden_size"] = 0; }); }, kInvalid,
       "text_config.hidden_size: value 0 is outside the supported range [1, 65536]"},
      {"hidden_size_negative",
       [] { return Mutated([](json& j) { j["text_config"]["hidden_size"] = -2560; }); }, kInvalid,
       "text_config.hidden_size: value -2560 is outside"},
      {"hidden_size_huge",
       [] { return Mutated([](json& j) { j["text_config"]["hidden_size"] = 1ull << 63; }); },
       kInvalid, "text_config.hidden_size: value 9223372036854775808 is outside"},
      {"hidden_size_float",
       [] { return Mutated([](json& j) { j["text_config"]["hidden_size"] = 2560.5; }); }, kInvalid,
       "text_config.hidden_size: must be an integer"},
      {"hidden_size_string",
       [] { return Mutated([](json& j) { j["text_config"]["hidden_size"] = "2560"; }); }, kInvalid,
       "text_config.hidden_size: must be an integer, got string"},
      {"vocab_too_large",
       [] { return Mutated([](json& j) { j["text_config"]["vocab_size"] = 1 << 25; }); }, kInvalid,
       "text_config.vocab_size: value 33554432 is outside"},
      {"kv_heads_do_not_divide",
       [] { return Mutated([](json& j) { j["text_config"]["num_key_value_heads"] = 3; }); },
       kInvalid, "text_config.num_key_value_heads: 3 does not divide num_attention_heads 8"},
      {"heads_do_not_divide_hidden",
       [] { return Mutated([](json& j) { j["text_config"]["hidden_size"] = 2564; }); }, kInvalid,
       "text_config.num_attention_heads: 8 does not divide hidden_size 2564"},
      {"odd_head_dim", [] { return Mutated([](json& j) { j["text_config"]["head_dim"] = 255; }); },
       kInvalid, "text_config.head_dim: 255 is odd"},
      {"vision_heads_do_not_divide",
       [] { return Mutated([](json& j) { j["vision_config"]["num_attention_heads"] = 7; }); },
       kInvalid, "vision_config.num_attention_heads: 7 does not divide hidden_size 1152"},
      {"layer_types_wrong_length",
       [] {
         return Mutated([](json& j) {
           j["text_config"]["layer_types"] = {"full_attention", "sliding_attention"};
         });
       },
       kInvalid, "text_config.layer_types: has 2 entries but num_hidden_layers is 34"},
      {"layer_types_bad_entry",
       [] {
         return Mutated([](json& j) {
           json lt = json::array();
           for (int i = 0; i < 34; ++i)
             lt.push_back(i == 7 ? "chunked_attention" : "full_attention");
           j["text_config"]["layer_types"] = lt;
         });
       },
       kInvalid, "text_config.layer_types: entry 7 is string \"chunked_attention\""},
      {"patch_does_not_divide_image",
       [] { return Mutated([](json& j) { j["vision_config"]["patch_size"] = 15; }); }, kInvalid,
       "vision_config.patch_size: 15 does not divide image_size 896"},
      {"non_square_image",
       [] { return Mutated([](json& j) {
              j["vision_config"]["image_size"] = {896, 448};
            }); },
       kUnimpl, "vision_config.image_size: non-square 896x448"},
      {"too_many_patches",
       [] {
         return Mutated([](json& j) {
           j["vision_config"]["image_size"] = 8192;
           j["vision_config"]["patch_size"] = 2;
         });
       },
       kInvalid, "patches exceeds 1048576"},
      {"rgba_vision",
       [] { return Mutated([](json& j) { j["vision_config"]["num_channels"] = 4; }); }, kUnimpl,
       "vision_config.num_channels: 4 input channels"},
      {"mm_tokens_not_square",
       [] { return Mutated([](json& j) { j["mm_tokens_per_image"] = 200; }); }, kInvalid,
       "mm_tokens_per_image: 200 is not a perfect square"},
      {"mm_tokens_do_not_pool",
       [] { return Mutated([](json& j) { j["mm_tokens_per_image"] = 9; }); }, kInvalid,
       "sqrt(9) = 3 does not divide the 64 patches per side"},
      {"rope_type_yarn",
       [] {
         return Mutated([](json& j) {
           j["text_config"]["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 8.0}};
         });
       },
       kUnimpl, "text_config.rope_scaling.rope_type: RoPE type \"yarn\" is not supported"},
      {"linear_without_factor",
       [] {
         return Mutated([](json& j) {
           j["text_config"]["rope_scaling"] = {{"rope_type", "linear"}};
         });
       },
       kInvalid, "text_config.rope_scaling.factor: is required"},
      {"rope_theta_zero",
       [] { return Mutated([](json& j) { j["text_config"]["rope_theta"] = 0; }); }, kInvalid,
       "text_config.rope_theta: value 0 is outside (0.0, 1000000000000.0]"},
      {"rope_parameters_flat",
       [] {
         return Mutated([](json& j) {
           j["text_config"]["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e4}};
         });
       },
       kInvalid, "text_config.rope_parameters: unexpected key \"rope_theta\""},
      {"rms_eps_zero",
       [] { return Mutated([](json& j) { j["text_config"]["rms_norm_eps"] = 0.0; }); }, kInvalid,
       "text_config.rms_norm_eps: value 0.0 is outside"},
      {"activation_relu",
       [] { return Mutated([](json& j) { j["text_config"]["hidden_activation"] = "relu"; }); },
       kUnimpl, "text_config.hidden_activation: \"relu\" is not supported"},
      {"final_softcap",
       [] { return Mutated([](json& j) { j["text_config"]["final_logit_softcapping"] = 30.0; }); },
       kUnimpl, "text_config.final_logit_softcapping: soft-capping is not supported"},
      {"bidirectional_text",
       [] {
         return Mutated([](json& j) { j["text_config"]["use_bidirectional_attention"] = true; });
       },
       kUnimpl, "use_bidirectional_attention"},
      {"tie_not_bool", [] { return Mutated([](json& j) { j["tie_word_embeddings"] = "yes"; }); },
       kInvalid, "tie_word_embeddings: must be true or false"},
      {"eos_not_int", [] { return Mutated([](json& j) {
                             j["eos_token_id"] = {1, "106"};
                           }); },
       kInvalid, "eos_token_id: must be an integer"},
      {"eos_out_of_vocab", [] { return Mutated([](json& j) {
                                  j["eos_token_id"] = {1, 300000};
                                }); },
       kInvalid, "eos_token_id: value 300000 is outside"},
      {"parameter_product_too_large",  // each field within bounds, the product is not
       [] {
         return Mutated([](json& j) {
           j["text_config"]["vocab_size"] = 1 << 24;
           j["text_config"]["hidden_size"] = 65536;
           j["text_config"]["intermediate_size"] = 262144;
           j["text_config"]["num_hidden_layers"] = 1024;
         });
       },
       kInvalid, "parameters, over the limit of 1099511627776"},
  };
}

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, RejectedWithItsOwnMessage) {
  const BadConfig& bad = GetParam();
  auto c = ParseGemma3Config(bad.text(), "model/config.json");
  ASSERT_FALSE(c.ok()) << bad.name << " was accepted";
  EXPECT_EQ(c.status().code(), bad.code) << c.status().ToString();
  EXPECT_NE(c.status().message().find(bad.message), std::string::npos)
      << "message: " << c.status().message() << "\nexpected to contain: " << bad.message;
  EXPECT_EQ(c.status().message().rfind("model/config.json: ", 0), 0u)
      << "the error must name the file: " << c.status().message();
}

INSTANTIATE_TEST_SUITE_P(Table, BadConfigTest, ::testing::ValuesIn(BadConfigs()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(ConfigTest, MissingFileIsNotFoundAndNamesIt) {
  auto c = LoadGemma3Config("/nonexistent/dir/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("/nonexistent/dir/config.json"), std::string::npos);
}

}  // namespace
}  // namespace vlmserve
