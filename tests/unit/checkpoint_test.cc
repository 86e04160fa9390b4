// Checkpoint loading against checkpoints saved by transformers (tests/fixtures/checkpoints, made by
// tools/golden/make_checkpoint_fixtures.py): every layout and naming convention loads, every
// tensor's bytes are found at the right place, and parameter counts equal transformers'. Then
// corrupt model directories, each rejected with an error naming the file and the tensor.
#include "model/weights/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/cpu/bf16.h"
#include "model/weights/config_json.h"
#include "tests/support/safetensors_io.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using vlmserve::testing::FixturePath;

float HalfToFloat(uint16_t h) {  // IEEE fp16 → fp32, exact
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(mant), -24);
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

std::vector<double> ToDoubles(const Weight& w) {
  std::vector<double> out;
  const size_t size = DTypeSize(w.dtype);
  for (size_t i = 0; i < w.data.size(); i += size) {
    if (w.dtype == DType::kF32) {
      float f;
      std::memcpy(&f, w.data.data() + i, 4);
      out.push_back(f);
    } else {
      uint16_t b;
      std::memcpy(&b, w.data.data() + i, 2);
      out.push_back(w.dtype == DType::kBF16 ? Bf16BitsToFloat(b) : HalfToFloat(b));
    }
  }
  return out;
}

class CheckpointFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CheckpointFixtureTest, LoadsLikeTransformers) {
  const std::string dir = FixturePath("checkpoints/" + GetParam());
  std::ifstream in(dir + ".expected.json");
  const json want = json::parse(in);
  auto config = LoadGemma3Config(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto ck = Checkpoint::Open(dir, *config);
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();

  EXPECT_EQ((*ck)->DTypeSummary(), want["dtype"].get<std::string>());
  EXPECT_EQ((*ck)->files().size(), want["files"].size());
  const ParameterCounts p = (*ck)->CountStoredParameters();
  const json& wp = want["params"];
  EXPECT_EQ(p.total, wp["total"].get<uint64_t>());
  EXPECT_EQ(p.language_model, wp["language_model"].get<uint64_t>());
  EXPECT_EQ(p.lm_head, wp["lm_head"].get<uint64_t>());
  if (config->has_vision) {
    EXPECT_EQ(p.vision_tower, wp["vision_tower"].get<uint64_t>());
    EXPECT_EQ(p.projector, wp["projector"].get<uint64_t>());
  }
  // The stored counts equal what the config alone predicts.
  auto predicted = CountParameters(*config);
  ASSERT_TRUE(predicted.ok());
  EXPECT_EQ(predicted->total, p.total);

  // Every tensor of the file: found under its internal name, right shape, right bytes.
  size_t checked = 0;
  for (const auto& [file_name, t] : want["tensors"].items()) {
    auto internal = InternalWeightName(file_name, !config->has_vision);
    ASSERT_TRUE(internal.has_value()) << file_name;
    const Weight* w = (*ck)->Find(*internal);
    if (!w && *internal == "lm_head.weight" && config->text.tie_word_embeddings) continue;
    ASSERT_NE(w, nullptr) << file_name << " → " << *internal;
    EXPECT_EQ(w->file_name, file_name);
    EXPECT_EQ(w->shape, t["shape"].get<std::vector<int64_t>>()) << file_name;
    EXPECT_EQ(fs::path(*w->file).filename(), t["file"].get<std::string>()) << file_name;
    const std::vector<double> v = ToDoubles(*w);
    double sum = 0;
    for (double x : v) sum += x;
    EXPECT_EQ(v.at(0), t["first"].get<double>()) << file_name;
    EXPECT_NEAR(sum, t["sum"].get<double>(), 1e-9 * (1 + std::fabs(sum))) << file_name;
    ++checked;
  }
  EXPECT_EQ(checked, (*ck)->weights().size());
}

INSTANTIATE_TEST_SUITE_P(Transformers, CheckpointFixtureTest,
                         ::testing::Values("v5-default-bf16", "runtime-f32", "sharded-f16",
                                           "hub-tied-head-bf16", "with-head-bf16",
                                           "text-untied-bf16"),
                         [](const auto& param_info) {
                           std::string s = param_info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

// ---- corrupt model directories -------------------------------------------------------------

using testing::RawTensor;
using testing::ReadAll;
using testing::WriteSafetensors;

class CorruptCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("vlmserve_ckpt_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    dir_ = root_ / "model";
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Copies a fixture into dir_ and loads its config.
  Gemma3Config Use(const std::string& fixture) {
    fs::copy(FixturePath("checkpoints/" + fixture), dir_, fs::copy_options::recursive);
    auto c = LoadGemma3Config((dir_ / "config.json").string());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return *c;
  }
  Status OpenStatus(const Gemma3Config& c) {
    auto ck = Checkpoint::Open(dir_.string(), c);
    return ck.ok() ? Status::Ok() : ck.status();
  }
  void ExpectError(const Gemma3Config& c, StatusCode code, const std::string& message) {
    Status s = OpenStatus(c);
    ASSERT_FALSE(s.ok()) << "accepted";
    EXPECT_EQ(s.code(), code) << s.ToString();
    EXPECT_NE(s.message().find(message), std::string::npos)
        << "message: " << s.message() << "\nexpected to contain: " << message;
  }
  json ReadIndex() {
    std::ifstream in(dir_ / "model.safetensors.index.json");
    return json::parse(in);
  }
  void WriteIndex(const json& j) {
    std::ofstream(dir_ / "model.safetensors.index.json") << j.dump();
  }

  fs::path root_, dir_;
};

TEST_F(CorruptCheckpointTest, NoWeights) {
  auto c = Use("v5-default-bf16");
  fs::remove(dir_ / "model.safetensors");
  ExpectError(c, StatusCode::kNotFound, "no model.safetensors or model.safetensors.index.json");
}

TEST_F(CorruptCheckpointTest, ShapeDisagreesWithConfig) {
  auto c = Use("v5-default-bf16");
  c.text.intermediate_size = 64;
  ExpectError(c, StatusCode::kInvalidArgument,
              "model.safetensors: tensor \"language_model.model.layers.0.mlp.gate_proj.weight\" "
              "has shape [48, 32], but the config implies [64, 32]");
}

TEST_F(CorruptCheckpointTest, MissingTensors) {
  auto c = Use("v5-default-bf16");
  c.text.num_hidden_layers = 3;
  c.text.layer_types.push_back(LayerType::kFullAttention);
  ExpectError(c, StatusCode::kInvalidArgument,
              "13 tensor(s) the config requires are missing, first: "
              "language_model.model.layers.2.input_layernorm.weight or "
              "model.language_model.layers.2.input_layernorm.weight");
}

TEST_F(CorruptCheckpointTest, UnexpectedTensor) {
  auto c = Use("v5-default-bf16");
  c.text.num_hidden_layers = 1;
  c.text.layer_types.resize(1);
  ExpectError(c, StatusCode::kInvalidArgument,
              "unexpected tensor \"language_model.model.layers.1.");
}

TEST_F(CorruptCheckpointTest, UnknownNamingConvention) {
  auto c = Use("v5-default-bf16");
  auto t = ReadAll(dir_ / "model.safetensors");
  t.push_back({"encoder.block.0.weight", DType::kF32, {1}, std::string(4, '\0')});
  WriteSafetensors(dir_ / "model.safetensors", t);
  ExpectError(c, StatusCode::kInvalidArgument,
              "tensor encoder.block.0.weight (in " + fs::canonical(dir_).string() +
                  "/model.safetensors) belongs to no known Gemma 3 multimodal naming convention");
}

TEST_F(CorruptCheckpointTest, TwoConventionsForOneTensor) {
  auto c = Use("v5-default-bf16");
  auto t = ReadAll(dir_ / "model.safetensors");
  for (const RawTensor& r : std::vector<RawTensor>(t)) {
    if (r.name == "language_model.model.norm.weight") {
      t.push_back({"model.language_model.norm.weight", r.dtype, r.shape, r.bytes});
    }
  }
  WriteSafetensors(dir_ / "model.safetensors", t);
  ExpectError(c, StatusCode::kInvalidArgument,
              "are both lm.norm.weight (two naming conventions mixed)");
}

TEST_F(CorruptCheckpointTest, TiedHeadThatDiffersFromTheEmbedding) {
  auto c = Use("v5-default-bf16");
  auto t = ReadAll(dir_ / "model.safetensors");
  for (const RawTensor& r : std::vector<RawTensor>(t)) {
    if (r.name == "language_model.model.embed_tokens.weight") {
      RawTensor head{"language_model.lm_head.weight", r.dtype, r.shape, r.bytes};
      head.bytes[10] ^= 1;
      t.push_back(head);
    }
  }
  WriteSafetensors(dir_ / "model.safetensors", t);
  ExpectError(c, StatusCode::kInvalidArgument,
              "tensor \"language_model.lm_head.weight\" differs from the embedding, but the config "
              "ties them");
}

TEST_F(CorruptCheckpointTest, CorruptSafetensorsHeaderNamesTheFile) {
  auto c = Use("v5-default-bf16");
  std::fstream f(dir_ / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(8);
  f.put('[');
  f.close();
  ExpectError(c, StatusCode::kInvalidArgument,
              "/model.safetensors: header does not start with '{'");
}

TEST_F(CorruptCheckpointTest, SymlinkOutsideTheModelDirectory) {
  auto c = Use("v5-default-bf16");
  fs::rename(dir_ / "model.safetensors", root_ / "elsewhere.safetensors");
  fs::create_symlink(root_ / "elsewhere.safetensors", dir_ / "model.safetensors");
  ExpectError(c, StatusCode::kInvalidArgument, "outside the model directory");
}

TEST_F(CorruptCheckpointTest, IndexEscapesTheModelDirectory) {
  auto c = Use("sharded-f16");
  json idx = ReadIndex();
  const std::string first = idx["weight_map"].begin().value();
  fs::rename(dir_ / first, root_ / "escaped.safetensors");
  for (auto& [name, shard] : idx["weight_map"].items())
    if (shard == first) shard = "../escaped.safetensors";
  WriteIndex(idx);
  ExpectError(c, StatusCode::kInvalidArgument,
              "names \"../escaped.safetensors\", which resolves to " +
                  fs::canonical(root_).string() +
                  "/escaped.safetensors, outside the model directory");
}

TEST_F(CorruptCheckpointTest, IndexNamesAMissingShard) {
  auto c = Use("sharded-f16");
  json idx = ReadIndex();
  idx["weight_map"].begin().value() = "model-00009-of-00009.safetensors";
  WriteIndex(idx);
  ExpectError(c, StatusCode::kNotFound,
              "names \"model-00009-of-00009.safetensors\", which does not exist");
}

TEST_F(CorruptCheckpointTest, IndexPutsATensorInTheWrongShard) {
  auto c = Use("sharded-f16");
  json idx = ReadIndex();
  auto& wm = idx["weight_map"];
  const std::string name = wm.begin().key(), shard = wm.begin().value();
  std::string other;
  for (auto& [n, s] : wm.items())
    if (s != shard) other = s;
  wm[name] = other;
  WriteIndex(idx);
  ExpectError(c, StatusCode::kInvalidArgument,
              "places tensor \"" + name + "\" in " + other + ", but it is in " + shard);
}

TEST_F(CorruptCheckpointTest, IndexListsATensorNoShardHas) {
  auto c = Use("sharded-f16");
  json idx = ReadIndex();
  idx["weight_map"]["language_model.model.ghost.weight"] = idx["weight_map"].begin().value();
  WriteIndex(idx);
  ExpectError(c, StatusCode::kInvalidArgument,
              "lists tensor \"language_model.model.ghost.weight\" in");
}

TEST_F(CorruptCheckpointTest, IndexOmitsATensor) {
  auto c = Use("sharded-f16");
  json idx = ReadIndex();
  const std::string name = idx["weight_map"].begin().key();
  idx["weight_map"].erase(name);
  WriteIndex(idx);
  ExpectError(c, StatusCode::kInvalidArgument, "tensor \"" + name + "\" is not listed in");
}

TEST_F(CorruptCheckpointTest, IndexTotalSizeLies) {
  auto c = Use("sharded-f16");
  json idx = ReadIndex();
  idx["metadata"]["total_size"] = idx["metadata"]["total_size"].get<uint64_t>() + 2;
  WriteIndex(idx);
  ExpectError(c, StatusCode::kInvalidArgument, "metadata.total_size is");
}

TEST_F(CorruptCheckpointTest, IndexWithoutWeightMap) {
  auto c = Use("sharded-f16");
  WriteIndex(json{{"metadata", json::object()}});
  ExpectError(c, StatusCode::kInvalidArgument, "\"weight_map\" is missing or not an object");
}

TEST_F(CorruptCheckpointTest, IndexNotJson) {
  auto c = Use("sharded-f16");
  std::ofstream(dir_ / "model.safetensors.index.json") << "{\"weight_map\": ";
  ExpectError(c, StatusCode::kInvalidArgument, "model.safetensors.index.json: invalid JSON");
}

}  // namespace
}  // namespace vlmserve
