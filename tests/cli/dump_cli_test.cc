// vlmserve-dump (the runner side of the fidelity check, tools/fidelity/): given a golden prompt as
// ids and pixels, the CPU runner's logits at every prompt position are transformers' fp32 logits
// (tests/fixtures/decoder, tools/golden/make_decoder_goldens.py), its greedy tokens transformers'
// greedy tokens, chunked prefill changes nothing, and bad inputs fail with a message.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/weights/safetensors.h"
#include "tests/support/golden_tensor.h"
#include "tests/support/run_command.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class DumpCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("vlmserve_dump_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_ / "in");
    // inputs.json from the golden prompt; the goldens file carries pixel_values itself.
    std::ifstream in(dir_ + "/goldens.json");
    golden_ = json::parse(in);
    const auto ids = golden_["input_ids"].get<std::vector<int32_t>>();
    std::vector<int> types(ids.size(), 0);
    for (const auto& run : golden_["image_runs"]) {
      for (size_t i = run[0]; i < run[0].get<size_t>() + run[1].get<size_t>(); ++i) types[i] = 1;
    }
    std::ofstream(tmp_ / "in" / "inputs.json") << json{{"input_ids", ids}, {"token_types", types}};
    fs::copy_file(dir_ + "/goldens.safetensors", tmp_ / "in" / "pixels.safetensors");
  }
  void TearDown() override { fs::remove_all(tmp_); }

  testing::CommandResult Dump(const std::string& extra, const std::string& out) {
    return testing::RunCommand(std::string(VLMSERVE_DUMP_BIN) + " --model " + dir_ +
                               " --inputs " + (tmp_ / "in").string() + " --out " +
                               (tmp_ / out).string() + " " + extra + " 2>&1");
  }
  std::vector<float> Tensor(const std::string& out, const std::string& name,
                            std::vector<int64_t>* shape = nullptr) {
    auto f = SafetensorsFile::Open((tmp_ / out / "ours.safetensors").string());
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? testing::GoldenTensor(**f, name, shape) : std::vector<float>{};
  }

  const std::string dir_ = testing::FixturePath("decoder/pool16_six_layers");
  fs::path tmp_;
  json golden_;
};

TEST_F(DumpCliTest, CpuRunnerGivesTransformersLogitsAndGreedyTokens) {
  auto r = Dump("--new-tokens 16", "one");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::vector<int64_t> shape;
  const std::vector<float> got = Tensor("one", "logits", &shape);
  auto g = SafetensorsFile::Open(dir_ + "/goldens.safetensors");
  ASSERT_TRUE(g.ok());
  const std::vector<float> want = testing::GoldenTensor(**g, "prompt_logits");
  ASSERT_EQ(shape, (std::vector<int64_t>{static_cast<int64_t>(golden_["input_ids"].size()), 1216}));
  ASSERT_EQ(got.size(), want.size());
  double max_ref = 0, max_err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(want[i])));
    max_err = std::max(max_err, std::fabs(double(got[i]) - want[i]));
  }
  EXPECT_LE(max_err, 1e-4 * max_ref);  // the decoder test's bound for the CPU reference

  Tensor("one", "soft_tokens", &shape);
  EXPECT_EQ(shape, (std::vector<int64_t>{1, 16, 64}));  // 1 image, 16 soft tokens, D = 64
  std::ifstream in(tmp_ / "one" / "ours.json");
  const json ours = json::parse(in);
  EXPECT_EQ(ours["greedy"], golden_["greedy_tokens"]);
  EXPECT_EQ(ours["device"], "cpu");
  EXPECT_EQ(ours["prompt_tokens"], golden_["input_ids"].size());

  // Prefill in chunks of 5 (an image run is never split): the same logits, bit for bit.
  auto c = Dump("--new-tokens 0 --chunk 5", "chunked");
  ASSERT_EQ(c.exit_code, 0) << c.out;
  EXPECT_EQ(Tensor("chunked", "logits"), got);
}

TEST_F(DumpCliTest, BadInputsFailWithAMessage) {
  std::ofstream(tmp_ / "in" / "inputs.json") << R"({"input_ids": [2, 3], "token_types": [0]})";
  auto r = Dump("", "bad");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("equal in length"), std::string::npos) << r.out;

  std::ofstream(tmp_ / "in" / "inputs.json") << R"({"input_ids": [2, 999999], "token_types": [0, 0]})";
  r = Dump("", "bad");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("vocab"), std::string::npos) << r.out;

  fs::remove(tmp_ / "in" / "inputs.json");
  r = Dump("", "bad");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("inputs.json"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace vlmserve
