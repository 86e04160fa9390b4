// PEFT LoRA adapters merged at load, against transformers + PEFT (goldens from
// tools/golden/make_lora_goldens.py: random non-zero A and B on the decoder fixtures' tiny models,
// PeftModel.merge_and_unload() run on their golden prompts). Cases: attention only (a list of
// short names, which also hits the vision tower), MLP only with rank 1 and rsLoRA, all-linear with
// rank_pattern / alpha_pattern and rsLoRA, a regex over vision + language, layers_to_transform with
// modules_to_save; module names of transformers 4.50–4.51, 4.52–4.57 and 5.x; bases stored with hub
// and runtime names. Merged: every prompt logit within the CPU runner's usual 1e-4 · max|ref|, 16
// greedy tokens identical. Then ≥ 12 corrupt adapters, each refused with one error naming the file
// and the reason, the base left untouched.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/cpu/bf16.h"
#include "model/model_dir.h"
#include "model/reference/cpu_runner.h"
#include "model/weights/config_json.h"
#include "model/weights/lora_adapter.h"
#include "model/weights/weight_convert.h"
#include "tests/support/golden_tensor.h"
#include "tests/support/safetensors_io.h"
#include "tests/support/step_driver.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using vlmserve::testing::FixturePath;

json ReadJson(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

void WriteJson(const fs::path& path, const json& j) { std::ofstream(path) << j.dump(2); }

struct Golden {
  json lora, base;
  std::string base_dir;
};

Golden LoadGolden(const std::string& name) {
  Golden g;
  g.lora = ReadJson(FixturePath("lora/" + name + "/goldens.json"));
  g.base_dir = FixturePath("decoder/" + g.lora["base"].get<std::string>());
  g.base = ReadJson(g.base_dir + "/goldens.json");
  return g;
}

class LoraGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraGoldenTest, MergedLogitsAndGreedyTokensMatchPeft) {
  const Golden g = LoadGolden(GetParam());
  const std::string adapter = FixturePath("lora/" + GetParam());
  auto model = ModelDir::Load(g.base_dir, adapter);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_TRUE(model->adapter.has_value());
  const LoraAdapterInfo& info = *model->adapter;
  EXPECT_EQ(info.name, GetParam());
  const std::string era = g.lora["era"];
  EXPECT_NE(info.naming.find("transformers " + era), std::string::npos) << info.naming;
  const int64_t modules = info.language_modules + info.vision_modules + info.other_modules;
  const size_t saved = g.lora["lora"].contains("modules_to_save") ? 2 : 0;  // projector: 2 params
  EXPECT_EQ(static_cast<size_t>(2 * modules) + saved, g.lora["lora_tensors"].get<size_t>());
  EXPECT_EQ(info.saved_tensors.size(), saved);

  auto runner = CpuModelRunner::Create(*model->checkpoint, model->config);
  ASSERT_TRUE(runner.ok()) << runner.status().ToString();
  const auto ids = g.base["input_ids"].get<std::vector<int32_t>>();
  std::vector<uint8_t> types(ids.size(), 0);
  for (const auto& run : g.base["image_runs"]) {
    for (size_t i = run[0]; i < run[0].get<size_t>() + run[1].get<size_t>(); ++i) types[i] = 1;
  }
  auto inputs = SafetensorsFile::Open(g.base_dir + "/goldens.safetensors");
  ASSERT_TRUE(inputs.ok());
  const std::vector<float> pixels = testing::GoldenTensor(**inputs, "pixel_values");
  auto images = (*runner)->EncodeImages(pixels, static_cast<int64_t>(g.base["image_runs"].size()));
  ASSERT_TRUE(images.ok()) << images.status().ToString();

  testing::StepDriver driver(**runner);
  auto logits = driver.Prefill(1, ids, types, *images, 0, true);
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  auto goldens = SafetensorsFile::Open(adapter + "/goldens.safetensors");
  ASSERT_TRUE(goldens.ok());
  const std::vector<float> want = testing::GoldenTensor(**goldens, "prompt_logits");
  ASSERT_EQ(logits->size(), want.size());
  double max_ref = 0, max_err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(want[i])));
    max_err = std::max(max_err, std::fabs(double((*logits)[i]) - want[i]));
  }
  EXPECT_LE(max_err, 1e-4 * max_ref);
  std::printf("%s: merged prompt logits max|diff| %.3g, max|ref| %.3g (ratio %.3g)\n",
              GetParam().c_str(), max_err, max_ref, max_err / max_ref);

  driver.Release(1);
  std::vector<int32_t> greedy;
  auto last = driver.Prefill(2, ids, types, *images, 0, false);
  ASSERT_TRUE(last.ok());
  greedy.push_back(
      static_cast<int32_t>(std::max_element(last->begin(), last->end()) - last->begin()));
  for (int step = 1; step < 16; ++step) {
    auto out = driver.Extend(2, std::span<const int32_t>(&greedy.back(), 1), false);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    greedy.push_back(out->token);
  }
  EXPECT_EQ(greedy, g.lora["greedy_tokens"].get<std::vector<int32_t>>());
  // The adapter matters: the base alone answers differently (so a skipped merge cannot pass).
  EXPECT_NE(greedy, g.base["greedy_tokens"].get<std::vector<int32_t>>());
  (*runner)->ReleaseImages(*images);
}

INSTANTIATE_TEST_SUITE_P(Peft, LoraGoldenTest,
                         ::testing::Values("attention_r8_era450", "mlp_r1_rslora",
                                           "all_linear_patterns_rslora",
                                           "vision_language_regex_era452",
                                           "layers_save_projector_era450"));

TEST(LoraAdapterTest, ReportsRankAlphaTargetsAndParameters) {
  const Golden g = LoadGolden("attention_r8_era450");
  auto model = ModelDir::Load(g.base_dir, FixturePath("lora/attention_r8_era450"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const LoraAdapterInfo& a = *model->adapter;
  EXPECT_EQ(a.naming, "transformers 4.50–4.51");
  EXPECT_EQ(a.rank, 8);
  EXPECT_EQ(a.min_rank, 8);
  EXPECT_EQ(a.max_rank, 8);
  EXPECT_EQ(a.alpha, 16);
  EXPECT_FALSE(a.rslora);
  EXPECT_EQ(a.targeted, (std::vector<std::string>{"k_proj", "o_proj", "q_proj", "v_proj"}));
  // 4 decoder layers × q, k, v, o; the vision layer's q, k, v_proj (its out_proj is not "o_proj").
  EXPECT_EQ(a.language_modules, 16);
  EXPECT_EQ(a.vision_modules, 3);
  // r · (in + out) per module: decoder D = 48, q 4·16 = 64, k/v 2·16 = 32; vision d = 32.
  const uint64_t lm = 4 * 8 * ((48 + 64) + (48 + 32) + (48 + 32) + (64 + 48));
  const uint64_t vision = 3 * 8 * (32 + 32);
  EXPECT_EQ(a.lora_parameters, lm + vision);

  auto patterns = ModelDir::Load(g.base_dir, FixturePath("lora/all_linear_patterns_rslora"));
  ASSERT_TRUE(patterns.ok()) << patterns.status().ToString();
  EXPECT_EQ(patterns->adapter->min_rank, 2);  // rank_pattern fc1: 2
  EXPECT_EQ(patterns->adapter->max_rank, 8);
  EXPECT_TRUE(patterns->adapter->rslora);
  EXPECT_EQ(patterns->adapter->naming, "transformers 5.x");
}

// A Gemma3ForCausalLM base (bf16, untied LM head, attention biases) with an adapter on q/v_proj
// and the LM head, whose base weight PEFT saves alongside ("lm_head.base_layer.weight"): the
// merged weights equal W + scale·B·A computed in fp32 by torch from the saved tensors.
TEST(LoraAdapterTest, TextOnlyBaseWithAnUntiedHead) {
  const std::string base_dir = FixturePath("checkpoints/text-untied-bf16");
  const std::string adapter = FixturePath("lora/text_only_untied_head");
  auto config = LoadGemma3Config(base_dir + "/config.json");
  ASSERT_TRUE(config.ok());
  auto ck = Checkpoint::Open(base_dir, *config);
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  auto a = LoraAdapter::Load(adapter, *config);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ((*a)->info().naming, "Gemma3ForCausalLM");
  EXPECT_EQ((*a)->info().language_modules, 4);
  EXPECT_EQ((*a)->info().other_modules, 1);  // the LM head
  ASSERT_TRUE((*a)->MergeInto(**ck).ok());
  auto goldens = SafetensorsFile::Open(adapter + "/goldens.safetensors");
  ASSERT_TRUE(goldens.ok());
  size_t checked = 0;
  for (const TensorEntry& t : (*goldens)->header().tensors) {
    const std::vector<float> want = testing::GoldenTensor(**goldens, t.name);
    const std::string internal = t.name == "lm_head.weight" ? t.name : "lm." + t.name.substr(6);
    const Weight* w = (*ck)->Find(internal);
    ASSERT_TRUE(w) << internal;
    EXPECT_EQ(w->dtype, DType::kF32) << internal;
    const std::vector<float> got = WeightToFloat(*w);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-6 * (1 + std::fabs(want[i]))) << internal << "[" << i << "]";
    }
    ++checked;
  }
  EXPECT_EQ(checked, 5u);
}

// Scratch adapters in a per-test temporary directory, made from a good one.
class AdapterScratchTest : public ::testing::Test {
 public:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("vlmserve_lora_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    base_ = LoadGolden("attention_r8_era450").base_dir;
  }
  void TearDown() override { fs::remove_all(root_); }

  // A copy of fixture adapter `name` as root_/<copy>.
  fs::path Copy(const std::string& name, const std::string& copy = "adapter") {
    const fs::path dst = root_ / copy;
    fs::create_directories(dst);
    for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
      fs::copy_file(fs::path(FixturePath("lora/" + name)) / f, dst / f);
    }
    return dst;
  }
  void EditConfig(const fs::path& dir, const std::function<void(json&)>& edit) {
    json j = ReadJson(dir / "adapter_config.json");
    edit(j);
    WriteJson(dir / "adapter_config.json", j);
  }
  void EditTensors(const fs::path& dir,
                   const std::function<void(std::vector<testing::RawTensor>&)>& edit) {
    auto t = testing::ReadAll(dir / "adapter_model.safetensors");
    edit(t);
    testing::WriteSafetensors(dir / "adapter_model.safetensors", t);
  }

  fs::path root_;
  std::string base_;
};

// target_modules "all-linear" (as written by hand; PEFT saves the resolved list) merges exactly
// what the resolved list merges, byte for byte.
TEST_F(AdapterScratchTest, AllLinearStringEqualsTheResolvedList) {
  const fs::path dir = Copy("all_linear_patterns_rslora");
  EditConfig(dir, [](json& j) { j["target_modules"] = "all-linear"; });
  auto listed = ModelDir::Load(base_, FixturePath("lora/all_linear_patterns_rslora"));
  auto string = ModelDir::Load(base_, dir.string());
  auto base = ModelDir::Load(base_);
  ASSERT_TRUE(listed.ok() && string.ok() && base.ok()) << string.status().ToString();
  size_t changed = 0;
  for (const Weight& w : listed->checkpoint->weights()) {
    const Weight* o = string->checkpoint->Find(w.name);
    const Weight* b = base->checkpoint->Find(w.name);
    ASSERT_TRUE(o && b);
    ASSERT_EQ(w.dtype, o->dtype) << w.name;
    EXPECT_EQ(std::memcmp(w.data.data(), o->data.data(), w.data.size()), 0) << w.name;
    changed += std::memcmp(w.data.data(), b->data.data(), w.data.size()) != 0;
  }
  // Every linear layer: 4 decoder layers × q k v o gate up down, the vision layer's q k v out fc1
  // fc2 (the tied LM head is the output layer all-linear leaves out).
  EXPECT_EQ(changed, 4u * 7 + 6);
}

// The merge itself, on one weight: W + scale · B·A in fp32, rsLoRA scale alpha / √r.
TEST_F(AdapterScratchTest, MergeIsWPlusScaledBTimesA) {
  auto base = ModelDir::Load(base_);
  auto merged = ModelDir::Load(base_, FixturePath("lora/mlp_r1_rslora"));
  ASSERT_TRUE(base.ok() && merged.ok()) << merged.status().ToString();
  auto file = SafetensorsFile::Open(FixturePath("lora/mlp_r1_rslora/adapter_model.safetensors"));
  ASSERT_TRUE(file.ok());
  std::vector<float> A, B;
  for (const TensorEntry& t : (*file)->header().tensors) {
    Weight w;
    w.dtype = t.dtype;
    w.shape = t.shape;
    w.data = (*file)->Data(t);
    if (t.name == "base_model.model.model.language_model.layers.2.mlp.up_proj.lora_A.weight")
      A = WeightToFloat(w);
    if (t.name == "base_model.model.model.language_model.layers.2.mlp.up_proj.lora_B.weight")
      B = WeightToFloat(w);
  }
  ASSERT_EQ(A.size(), 48u);  // r = 1, in = 48
  ASSERT_EQ(B.size(), 96u);  // out = 96
  const std::string name = "lm.layers.2.mlp.up_proj.weight";
  const std::vector<float> w0 = WeightToFloat(*base->checkpoint->Find(name));
  const std::vector<float> w1 = WeightToFloat(*merged->checkpoint->Find(name));
  const float scale = static_cast<float>(4.0 / std::sqrt(1.0));  // alpha 4, r 1, rsLoRA
  for (size_t o = 0; o < 96; ++o) {
    for (size_t i = 0; i < 48; ++i) {
      ASSERT_EQ(w1[o * 48 + i], w0[o * 48 + i] + (B[o] * A[i]) * scale) << o << "," << i;
    }
  }
  // Weights the adapter does not target are the base's own bytes.
  const Weight* q0 = base->checkpoint->Find("lm.layers.2.self_attn.q_proj.weight");
  const Weight* q1 = merged->checkpoint->Find("lm.layers.2.self_attn.q_proj.weight");
  EXPECT_EQ(q1->dtype, q0->dtype);
  EXPECT_EQ(std::memcmp(q0->data.data(), q1->data.data(), q0->data.size()), 0);
}

// For a bf16 runner the merged tensors are stored as bf16: the fp32 merge rounded to nearest even,
// once (bitwise), at half the host memory; untargeted weights keep their own bytes.
TEST_F(AdapterScratchTest, MergedTensorsStoredInTheRunnersDtype) {
  auto f32 = ModelDir::Load(base_, FixturePath("lora/attention_r8_era450"));
  auto b16 = ModelDir::Load(base_, FixturePath("lora/attention_r8_era450"), DType::kBF16);
  ASSERT_TRUE(f32.ok() && b16.ok()) << b16.status().ToString();
  auto base = ModelDir::Load(base_);
  ASSERT_TRUE(base.ok());
  size_t merged = 0;
  for (const Weight& w : f32->checkpoint->weights()) {
    const Weight* h = b16->checkpoint->Find(w.name);
    const Weight* b = base->checkpoint->Find(w.name);
    if (std::memcmp(w.data.data(), b->data.data(), w.data.size()) == 0) {
      EXPECT_EQ(h->dtype, b->dtype) << w.name << ": untargeted, yet replaced";
      EXPECT_EQ(std::memcmp(h->data.data(), b->data.data(), b->data.size()), 0) << w.name;
      continue;
    }
    ++merged;
    ASSERT_EQ(h->dtype, DType::kBF16) << w.name;
    const std::vector<float> want = WeightToFloat(w), got = WeightToFloat(*h);
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got[i], RoundToBf16(want[i])) << w.name << "[" << i << "]";
    }
  }
  EXPECT_EQ(merged, 19u);  // 16 decoder + 3 vision modules
}

struct Corruption {
  std::string name;
  std::function<void(AdapterScratchTest&, const fs::path&)> apply;
  StatusCode code;
  std::string file;    // the file the message must name
  std::string reason;  // and a phrase of the reason
};

class CorruptAdapterTest : public AdapterScratchTest, public ::testing::WithParamInterface<size_t> {
 public:
  static const std::vector<Corruption>& Table();
};

using T = std::vector<testing::RawTensor>;
const char kA[] = "base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight";
const char kB[] = "base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_B.weight";

testing::RawTensor* Find(T& t, const std::string& name) {
  for (auto& x : t) {
    if (x.name == name) return &x;
  }
  ADD_FAILURE() << "no " << name;
  static testing::RawTensor none;
  return &none;
}

const std::vector<Corruption>& CorruptAdapterTest::Table() {
  static const std::vector<Corruption> table = {
      {"missing_config",
       [](AdapterScratchTest&, const fs::path& d) { fs::remove(d / "adapter_config.json"); },
       StatusCode::kNotFound, "adapter_config.json", "missing"},
      {"missing_weights",
       [](AdapterScratchTest&, const fs::path& d) { fs::remove(d / "adapter_model.safetensors"); },
       StatusCode::kNotFound, "adapter_model.safetensors", "missing"},
      {"pickle_weights",
       [](AdapterScratchTest&, const fs::path& d) {
         fs::rename(d / "adapter_model.safetensors", d / "adapter_model.bin");
       },
       StatusCode::kUnimplemented, "adapter_model.safetensors", "pickle"},
      {"rank_zero",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["r"] = 0; });
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "r = 0 is out of range"},
      {"nan_alpha",  // what Python's json.dump writes for float("nan")
       [](AdapterScratchTest&, const fs::path& d) {
         std::ifstream in(d / "adapter_config.json");
         std::string s((std::istreambuf_iterator<char>(in)), {});
         const auto at = s.find("\"lora_alpha\": 16");
         s.replace(at, 16, "\"lora_alpha\": NaN");
         std::ofstream(d / "adapter_config.json") << s;
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "NaN"},
      {"scale_overflows",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["lora_alpha"] = 1e300; });
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "not finite"},
      {"wrong_rank_shape",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["rank_pattern"] = {{"q_proj", 4}}; });
       },
       StatusCode::kInvalidArgument, "adapter_model.safetensors",
       "shape [8, 48], expected [4, 48]"},
      {"other_model_size",  // lora_B rows for a wider model
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditTensors(d, [](T& x) {
           auto* b = Find(x, kB);
           b->shape = {128, 8};
           b->bytes.resize(128 * 8 * 4, '\0');
         });
       },
       StatusCode::kInvalidArgument, "adapter_model.safetensors", "another model size"},
      {"unknown_module",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditTensors(d, [](T& x) {
           Find(x, kA)->name =
               "base_model.model.language_model.model.layers.9.self_attn.q_proj.lora_A.weight";
           Find(x, kB)->name =
               "base_model.model.language_model.model.layers.9.self_attn.q_proj.lora_B.weight";
         });
       },
       StatusCode::kInvalidArgument, "adapter_model.safetensors", "has no linear layer"},
      {"other_architecture",  // GPT-2 style target modules
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["target_modules"] = {"c_attn", "c_proj"}; });
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "matches no linear layer"},
      {"missing_lora_b",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditTensors(d, [](T& x) {
           std::erase_if(x, [](const testing::RawTensor& r) { return r.name == kB; });
         });
       },
       StatusCode::kInvalidArgument, "adapter_model.safetensors", "has no lora_B partner"},
      {"targeted_but_absent",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["target_modules"].push_back("gate_proj"); });
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "mlp.gate_proj"},
      {"present_but_untargeted",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["target_modules"] = {"q_proj", "k_proj", "v_proj"}; });
       },
       StatusCode::kInvalidArgument, "adapter_model.safetensors", "does not target"},
      {"header_lies",  // the header claims more bytes than the file has
       [](AdapterScratchTest&, const fs::path& d) {
         fs::resize_file(d / "adapter_model.safetensors",
                         fs::file_size(d / "adapter_model.safetensors") - 100);
       },
       StatusCode::kInvalidArgument, "adapter_model.safetensors", ""},
      {"nan_weights",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditTensors(d, [](T& x) {
           const float nan = NAN;
           std::memcpy(Find(x, kB)->bytes.data(), &nan, 4);
         });
       },
       StatusCode::kInvalidArgument, "adapter_model.safetensors", "NaN or inf"},
      {"dora",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["use_dora"] = true; });
       },
       StatusCode::kUnimplemented, "adapter_config.json", "use_dora"},
      {"trained_bias",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["bias"] = "all"; });
       },
       StatusCode::kUnimplemented, "adapter_config.json", "bias \"none\" only"},
      {"not_lora",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["peft_type"] = "IA3"; });
       },
       StatusCode::kUnimplemented, "adapter_config.json", "only LoRA"},
      {"not_json",
       [](AdapterScratchTest&, const fs::path& d) {
         std::ofstream(d / "adapter_config.json") << "{\"r\": 8,";
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "not valid JSON"},
      {"foreign_tensor_name",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditTensors(d, [](T& x) { Find(x, kA)->name = "layers.0.q_proj.lora_A.weight"; });
       },
       StatusCode::kInvalidArgument, "adapter_model.safetensors", "not named like a PEFT"},
      {"python_named_group",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["target_modules"] = ".*(?P<m>q_proj)"; });
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "(?P"},
      {"backtracking_bomb",  // exponential for a backtracking matcher: must end, and match nothing
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["target_modules"] = "(.*)*(.*)*(.*)*(.*)*(.*)*[!]"; });
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "matches no linear layer"},
      {"backreference",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) { j["target_modules"] = "(q)_proj\\1"; });
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "not a regular expression"},
      {"layers_with_regex",
       [](AdapterScratchTest& t, const fs::path& d) {
         t.EditConfig(d, [](json& j) {
           j["target_modules"] = ".*q_proj";
           j["layers_to_transform"] = {0};
         });
       },
       StatusCode::kInvalidArgument, "adapter_config.json", "layers_to_transform needs"},
  };
  return table;
}

TEST_P(CorruptAdapterTest, RefusedWithOneClearError) {
  const Corruption& c = Table()[GetParam()];
  SCOPED_TRACE(c.name);
  const fs::path dir = Copy("attention_r8_era450");
  c.apply(*this, dir);
  auto model = ModelDir::Load(base_, dir.string());
  ASSERT_FALSE(model.ok()) << c.name << " was accepted";
  EXPECT_EQ(model.status().code(), c.code) << model.status().ToString();
  const std::string& msg = model.status().message();
  EXPECT_NE(msg.find((dir / c.file).string()), std::string::npos) << msg;
  EXPECT_NE(msg.find(c.reason), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
}

INSTANTIATE_TEST_SUITE_P(Table, CorruptAdapterTest,
                         ::testing::Range<size_t>(0, CorruptAdapterTest::Table().size()),
                         [](const auto& p) { return CorruptAdapterTest::Table()[p.param].name; });

// A merge that fails leaves the checkpoint as it was (all merged tensors are computed first).
TEST_F(AdapterScratchTest, FailedMergeLeavesTheBaseUntouched) {
  const fs::path dir = Copy("attention_r8_era450");
  EditTensors(dir, [](T& x) {
    // The last module merged (sorted by name: vision after language) carries the inf.
    auto* b = Find(x,
                   "base_model.model.vision_tower.vision_model.encoder.layers.0.self_attn.v_proj."
                   "lora_B.weight");
    const float inf = INFINITY;
    std::memcpy(b->bytes.data(), &inf, 4);
  });
  auto base = ModelDir::Load(base_);
  ASSERT_TRUE(base.ok());
  std::vector<const uint8_t*> before;
  for (const Weight& w : base->checkpoint->weights()) before.push_back(w.data.data());
  auto adapter = LoraAdapter::Load(dir.string(), base->config);
  ASSERT_TRUE(adapter.ok()) << adapter.status().ToString();
  const Status s = (*adapter)->MergeInto(*base->checkpoint);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("v_proj: lora_A or lora_B holds NaN or inf"), std::string::npos)
      << s.ToString();
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(base->checkpoint->weights()[i].data.data(), before[i])
        << base->checkpoint->weights()[i].name << " was replaced";
  }
}

}  // namespace
}  // namespace vlmserve
