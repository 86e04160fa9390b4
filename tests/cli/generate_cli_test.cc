// vlmserve-generate end to end: a PNG, the prompt, pan & scan, the CPU runner and greedy decoding
// reproduce the tokens and text transformers generated for the same request
// (tests/fixtures/decoder/gqa4_pan_scan_runtime_names, tools/golden/make_decoder_goldens.py).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/run_command.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;

using Result = vlmserve::testing::CommandResult;

Result RunGenerate(const std::string& args) {
  return vlmserve::testing::RunCommand(std::string(VLMSERVE_GENERATE_BIN) + " " + args + " 2>&1");
}

TEST(GenerateCliTest, ReproducesTransformersGreedyGeneration) {
  const std::string dir = vlmserve::testing::FixturePath("decoder/gqa4_pan_scan_runtime_names");
  std::ifstream in(dir + "/goldens.json");
  const json g = json::parse(in);
  Result r = RunGenerate("--model " + dir + " --image " + dir +
                         "/image0.png --prompt \"Read the wide banner.\" "
                         "--pan-and-scan --max-new-tokens 16 --json --output-mode text");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json out = json::parse(r.out);
  // The model has no stop among these 16 tokens (checked), so all 16 come out.
  EXPECT_EQ(out["tokens"], g["greedy_tokens"]);
  EXPECT_EQ(out["text"], g["greedy_text"]);
  EXPECT_EQ(out["finish_reason"], "length");
  EXPECT_EQ(out["images"], 5);  // the full image and 4 crops
  EXPECT_EQ(out["prompt_tokens"], g["input_ids"].size());

  Result text = RunGenerate("--model " + dir + " --image " + dir +
                            "/image0.png --prompt \"Read the wide banner.\" "
                            "--pan-and-scan --max-new-tokens 16 --output-mode text");
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_EQ(text.out.rfind(g["greedy_text"].get<std::string>() + "\n", 0), 0u) << text.out;
  EXPECT_NE(text.out.find("[111 prompt tokens, 5 image(s);"), std::string::npos) << text.out;
}

// --adapter: base + PEFT LoRA adapter, merged at load, gives PeftModel.merge_and_unload()'s greedy
// tokens (tools/golden/make_lora_goldens.py on this base's golden prompt).
TEST(GenerateCliTest, WithALoraAdapterReproducesPeftsMergedModel) {
  const std::string dir = vlmserve::testing::FixturePath("decoder/gqa4_pan_scan_runtime_names");
  for (const char* name : {"vision_language_regex_era452", "layers_save_projector_era450"}) {
    const std::string adapter = vlmserve::testing::FixturePath(std::string("lora/") + name);
    std::ifstream in(adapter + "/goldens.json");
    const json g = json::parse(in);
    Result r = RunGenerate("--model " + dir + " --adapter " + adapter + " --image " + dir +
                           "/image0.png --prompt \"Read the wide banner.\" "
                           "--pan-and-scan --max-new-tokens 16 --json --output-mode text");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(json::parse(r.out)["tokens"], g["greedy_tokens"]) << name;
  }
  Result missing = RunGenerate("--model " + dir + " --adapter /nonexistent --prompt hi");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.out.find("--adapter /nonexistent: no such directory"), std::string::npos)
      << missing.out;
}

// The default output is one action of the default schema; a narrowed button set and a custom
// schema from a file are honoured; a bad schema file is an error naming the keyword.
TEST(GenerateCliTest, ActionModeIsTheDefault) {
  const std::string dir = vlmserve::testing::FixturePath("decoder/pool16_six_layers");
  const std::string base = "--model " + dir + " --image " + dir + "/image0.png --prompt go --json";
  Result r = RunGenerate(base);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json out = json::parse(r.out);
  const json action = json::parse(out["text"].get<std::string>());
  EXPECT_EQ(action["button"], out["action"]["fields"]["button"]);
  EXPECT_EQ(out["finish_reason"], "stop");
  EXPECT_EQ(out["forced_tokens"].get<int>() + out["sampled_tokens"].get<int>(),
            static_cast<int>(out["tokens"].size()));
  Result narrow = RunGenerate(base + " --allowed-buttons l,r --temperature 2 --seed 3");
  ASSERT_EQ(narrow.exit_code, 0) << narrow.out;
  const std::string b = json::parse(narrow.out)["action"]["fields"]["button"];
  EXPECT_TRUE(b == "l" || b == "r") << narrow.out;
  const std::string schema = ::testing::TempDir() + "/schema.json";
  std::ofstream(schema) << R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3}}})";
  Result custom = RunGenerate(base + " --action-schema " + schema);
  ASSERT_EQ(custom.exit_code, 0) << custom.out;
  const int n = json::parse(json::parse(custom.out)["text"].get<std::string>())["n"];
  EXPECT_TRUE(n >= 1 && n <= 3);
  std::ofstream(schema) << R"({"type": "object", "properties": {"n": {"type": "number"}}})";
  Result bad = RunGenerate(base + " --action-schema " + schema);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("\"number\" is not supported"), std::string::npos) << bad.out;
}

TEST(GenerateCliTest, Errors) {
  const std::string dir = vlmserve::testing::FixturePath("decoder/pool16_six_layers");
  EXPECT_EQ(RunGenerate("--prompt hi").exit_code, 2);  // no --model
  Result missing = RunGenerate("--model /nonexistent --prompt hi");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.out.find("NOT_FOUND"), std::string::npos) << missing.out;
  Result bad_temp = RunGenerate("--model " + dir + " --prompt hi --temperature -1");
  EXPECT_EQ(bad_temp.exit_code, 1);
  EXPECT_NE(bad_temp.out.find("temperature must be"), std::string::npos) << bad_temp.out;
  Result bad_frames =
      RunGenerate("--model " + dir + " --prompt hi --frames " + dir + "/image0.png " +
                  vlmserve::testing::FixturePath("images/png/rgb8_p.png"));
  EXPECT_EQ(bad_frames.exit_code, 1);
  EXPECT_NE(bad_frames.out.find("all frames of a grid must have the same size"), std::string::npos);
}

}  // namespace
}  // namespace vlmserve
