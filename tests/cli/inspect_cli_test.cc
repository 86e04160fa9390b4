// vlmserve-inspect as users run it: the real binary, its exit codes, its JSON and text output.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/run_command.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using vlmserve::testing::FixturePath;

using Result = vlmserve::testing::CommandResult;

Result RunInspect(const std::string& args) {
  return vlmserve::testing::RunCommand(std::string(VLMSERVE_INSPECT_BIN) + " " + args + " 2>&1");
}

TEST(InspectCliTest, Published4BAsJson) {
  Result r = RunInspect("--json --config-only " + FixturePath("configs/gemma3-4b-it.json"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["total_parameters"], 4300079472u);
  EXPECT_EQ(j["vision_tower"]["parameters"], 416866032u);
  EXPECT_EQ(j["vision_tower"]["patches_per_image"], 4096);
  EXPECT_EQ(j["projector"]["parameters"], 2950272u);
  EXPECT_EQ(j["projector"]["pool_kernel"], 4);
  EXPECT_EQ(j["language_model"]["parameters"], 3880263168u);
  EXPECT_EQ(j["language_model"]["global_layers"], nlohmann::json({5, 11, 17, 23, 29}));
  EXPECT_EQ(j["memory"]["weights_bf16_bytes"], 8600158944u);
  EXPECT_EQ(j["memory"]["kv_cache_bytes_per_token"], 139264u);
}

TEST(InspectCliTest, ConfigOnlyTextReport) {
  Result r = RunInspect("--config-only " + FixturePath("configs/gemma3-4b-it.json"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("total               4,300,079,472"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vision tower     SigLIP: 27 layers, width 1152, 16 heads x 72"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("8,600,158,944 bytes  8.60 GB"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("139,264 bytes"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("stored weights"), std::string::npos) << r.out;
}

// A checkpoint saved by transformers (tests/fixtures/checkpoints): the stored weights are read,
// validated and counted; the counts equal transformers' (in the fixture's .expected.json).
TEST(InspectCliTest, CheckpointDirectoryReadsTheWeights) {
  const std::string dir = FixturePath("checkpoints/sharded-f16");
  Result r = RunInspect("--json " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  std::ifstream in(dir + ".expected.json");
  auto want = nlohmann::json::parse(in);
  EXPECT_EQ(j["weights"]["dtype"], "F16");
  EXPECT_EQ(j["weights"]["files"].size(), 4u);
  EXPECT_EQ(j["weights"]["stored_parameters"]["total"], want["params"]["total"]);
  EXPECT_EQ(j["weights"]["stored_parameters"]["vision_tower"], want["params"]["vision_tower"]);
  EXPECT_EQ(j["weights"]["stored_parameters"]["projector"], want["params"]["projector"]);
  EXPECT_EQ(j["weights"]["stored_parameters"]["language_model"], want["params"]["language_model"]);
  EXPECT_EQ(j["total_parameters"], want["params"]["total"]);

  Result text = RunInspect(FixturePath("checkpoints/text-untied-bf16"));
  ASSERT_EQ(text.exit_code, 0) << text.out;
  EXPECT_NE(text.out.find("stored weights   1 file(s), BF16"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("LM head 8,192"), std::string::npos) << text.out;
}

TEST(InspectCliTest, DirectoryWithoutWeightsSaysHowToInspectAConfig) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("vlmserve_inspect_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(FixturePath("configs/gemma3-4b-it.json"), dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  Result r = RunInspect(dir.string());
  std::filesystem::remove_all(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("no model.safetensors or model.safetensors.index.json (to describe a "
                       "config alone: --config-only FILE)"),
            std::string::npos)
      << r.out;
}

TEST(InspectCliTest, TextOnlyModelHasNoVision) {
  Result r = RunInspect("--json --config-only " + FixturePath("configs/gemma3-1b-text.json"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["vision_tower"].is_null());
  EXPECT_EQ(j["total_parameters"], 999885952u);
}

TEST(InspectCliTest, ErrorsAreOneClearLineAndExitCode1) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("vlmserve_inspect_bad_" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << R"({"model_type": "gemma3", "text_config": {"num_key_value_heads": 3}})";
  Result r = RunInspect("--config-only " + path.string());
  std::filesystem::remove(path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "vlmserve-inspect: error: INVALID_ARGUMENT: " + path.string() +
                       ": text_config.num_key_value_heads: 3 does not divide "
                       "num_attention_heads 8 (grouped-query attention)\n");

  Result missing = RunInspect("/nonexistent-model-dir");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.out.find("NOT_FOUND: /nonexistent-model-dir/config.json: no such file"),
            std::string::npos)
      << missing.out;
}

TEST(InspectCliTest, UsageErrorsExit2AndHelpExits0) {
  EXPECT_EQ(RunInspect("").exit_code, 2);
  EXPECT_EQ(RunInspect("--bogus-flag x").exit_code, 2);
  EXPECT_EQ(RunInspect("dir --config-only f.json").exit_code, 2);
  Result help = RunInspect("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--config-only"), std::string::npos);
}

// --adapter: the LoRA adapter's rank, alpha, targets and parameters, validated against the base
// and merged; with --config-only validated against the config alone. A corrupt adapter exits 1
// with one error line naming the file and the reason.
TEST(InspectCliTest, LoraAdapterReport) {
  const std::string base = FixturePath("decoder/gqa2_two_images");
  const std::string adapter = FixturePath("lora/all_linear_patterns_rslora");
  Result r = RunInspect("--json " + base + " --adapter " + adapter);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out)["adapter"];
  EXPECT_EQ(j["name"], "all_linear_patterns_rslora");
  EXPECT_EQ(j["naming"], "transformers 5.x");
  EXPECT_EQ(j["rank"], 8);
  EXPECT_EQ(j["min_rank"], 2);
  EXPECT_EQ(j["alpha"], 8.0);
  EXPECT_EQ(j["rslora"], true);
  EXPECT_EQ(j["language_modules"], 28);
  EXPECT_EQ(j["vision_modules"], 6);
  EXPECT_EQ(j["merged"], true);
  // Σ r·(in + out): decoder (D 48, q 64, kv 32, MLP 96) per layer: q/k/v/o/gate/up at r 8, down
  // at r 4 (rank_pattern); vision (d 32, MLP 48): q/k/v/out/fc2 at r 8, fc1 at r 2.
  const int lm = 8 * ((48 + 64) + 2 * (48 + 32) + (64 + 48) + 2 * (48 + 96)) + 4 * (96 + 48);
  const int vision = 8 * (4 * (32 + 32) + (48 + 32)) + 2 * (32 + 48);
  EXPECT_EQ(j["lora_parameters"], 4 * lm + vision);

  Result text = RunInspect(base + " --adapter " + adapter);
  ASSERT_EQ(text.exit_code, 0) << text.out;
  EXPECT_NE(text.out.find("LoRA adapter"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("rank 8 (per module 2..8), alpha 8, scale alpha/sqrt(r) (rsLoRA)"),
            std::string::npos)
      << text.out;

  Result config_only =
      RunInspect("--json --config-only " + base + "/config.json --adapter " + adapter);
  ASSERT_EQ(config_only.exit_code, 0) << config_only.out;
  EXPECT_EQ(nlohmann::json::parse(config_only.out)["adapter"]["merged"], false);

  // An adapter for another base: the 3-layer model's adapter on the 4-layer one.
  Result wrong = RunInspect(base + " --adapter " + FixturePath("lora/vision_language_regex_era452"));
  EXPECT_EQ(wrong.exit_code, 1) << wrong.out;
  EXPECT_NE(wrong.out.find("adapter_model.safetensors"), std::string::npos) << wrong.out;
  EXPECT_NE(wrong.out.find("vlmserve-inspect: error: INVALID_ARGUMENT"), std::string::npos)
      << wrong.out;
}

}  // namespace
}  // namespace vlmserve
