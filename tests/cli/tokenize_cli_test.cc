// vlmserve-tokenize as outside checks run it: JSON lines on stdin, one JSON array of ids per line,
// with the tiny tokenizer committed in tests/fixtures and its HF goldens.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/run_command.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;
using vlmserve::testing::FixturePath;

using Result = vlmserve::testing::CommandResult;

Result RunTokenize(const std::string& args, const std::string& input, bool merge_stderr = false) {
  const auto in_path = std::filesystem::temp_directory_path() /
                       ("vlmserve_tokenize_in_" + std::to_string(::getpid()));
  std::ofstream(in_path, std::ios::binary) << input;
  const std::string cmd = std::string(VLMSERVE_TOKENIZE_BIN) + " " + args + " < " +
                          in_path.string() + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  Result r = vlmserve::testing::RunCommand(cmd);
  std::filesystem::remove(in_path);
  return r;
}

std::vector<json> TinyCases(size_t n) {
  std::ifstream in(FixturePath("tokenizer/tiny_cases.jsonl"));
  std::vector<json> out;
  for (std::string line; std::getline(in, line) && out.size() < n;) {
    json j = json::parse(line);
    if (j.contains("text") && j["cat"] != "decode") out.push_back(j);
  }
  return out;
}

const std::string kTok = "--tokenizer " + FixturePath("tokenizer/tiny/tokenizer.json");

TEST(TokenizeCliTest, EncodesJsonLinesLikeHf) {
  const auto cases = TinyCases(120);
  std::string input;
  for (const json& c : cases) input += json{{"text", c["text"]}}.dump() + "\n";
  for (bool bos : {true, false}) {
    Result r = RunTokenize(kTok + (bos ? "" : " --no-bos"), input);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    std::istringstream lines(r.out);
    std::string line;
    for (const json& c : cases) {
      ASSERT_TRUE(std::getline(lines, line));
      std::vector<int32_t> want = c["ids"];
      if (bos) want.insert(want.begin(), 2);
      EXPECT_EQ(json::parse(line), json(want)) << c["text"];
      EXPECT_EQ(line.find(' '), std::string::npos) << "compact arrays: " << line;
    }
    EXPECT_FALSE(std::getline(lines, line)) << "one line per input line";
  }
}

TEST(TokenizeCliTest, DecodesArrays) {
  Result r = RunTokenize(kTok + " --decode", "[2, 1, 3]\n\n[]\n");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "{\"text\":\"<bos><eos><unk>\"}\n{\"text\":\"\"}\n");
  Result skip = RunTokenize(kTok + " --decode --skip-special-tokens", "[2, 1, 3]\n");
  EXPECT_EQ(skip.out, "{\"text\":\"\"}\n");
}

TEST(TokenizeCliTest, BadInputNamesTheLine) {
  Result r = RunTokenize(kTok, "{\"text\": \"ok\"}\n{\"txt\": 1}\n", true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("vlmserve-tokenize: line 2: expected {\"text\": \"...\"}"),
            std::string::npos)
      << r.out;
  Result bad_json = RunTokenize(kTok, "{\"text\": \n", true);
  EXPECT_EQ(bad_json.exit_code, 1);
  EXPECT_NE(bad_json.out.find("line 1: invalid JSON"), std::string::npos) << bad_json.out;
  Result surrogate = RunTokenize(kTok, "{\"text\": \"\\ud800\"}\n", true);
  EXPECT_EQ(surrogate.exit_code, 1) << surrogate.out;
  EXPECT_EQ(RunTokenize("", "").exit_code, 2);  // --tokenizer is required
  Result missing = RunTokenize("--tokenizer /nonexistent.json", "", true);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.out.find("NOT_FOUND"), std::string::npos) << missing.out;
}

}  // namespace
}  // namespace vlmserve
