// Bounded JSON input: depth limits that ignore brackets inside strings, file-size caps, errors
// that name the file.
#include "common/json_util.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace vlmserve {
namespace {

TEST(JsonDepthTest, CountsOnlyStructure) {
  EXPECT_TRUE(CheckJsonDepth("{\"a\": [[1]]}", 3).ok());
  EXPECT_FALSE(CheckJsonDepth("{\"a\": [[[1]]]}", 3).ok());
  // Brackets inside strings, also after escaped quotes, are text.
  EXPECT_TRUE(CheckJsonDepth("{\"a\": \"[[[[\\\"[[[[\"}", 1).ok());
  EXPECT_TRUE(CheckJsonDepth("", 0).ok());
}

TEST(JsonDepthTest, DeepInputIsRejectedBeforeParsing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto j = ParseJsonBounded(deep, 64, "deep.json");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(j.status().message(), "deep.json: JSON nested deeper than 64 levels (at byte 64)");
}

TEST(JsonParseTest, SyntaxErrorNamesSourceAndPosition) {
  auto j = ParseJsonBounded("{\"a\": 1,}", 8, "x.json");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("x.json: invalid JSON"), std::string::npos);
  EXPECT_NE(j.status().message().find("column"), std::string::npos) << j.status().message();
}

class ReadFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("vlmserve_json_util_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ReadFileTest, ReadsWithinLimitAndRejectsAbove) {
  const auto path = (dir_ / "f.json").string();
  std::ofstream(path) << "0123456789";
  auto ok = ReadFileBounded(path, 10);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "0123456789");
  auto big = ReadFileBounded(path, 9);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().message(), path + ": file is 10 bytes, over the limit of 9");
}

TEST_F(ReadFileTest, MissingAndNonRegular) {
  auto missing = ReadFileBounded((dir_ / "nope").string(), 100);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  auto directory = ReadFileBounded(dir_.string(), 100);
  EXPECT_EQ(directory.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(directory.status().message().find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace vlmserve
