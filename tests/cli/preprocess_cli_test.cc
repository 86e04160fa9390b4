// vlmserve-preprocess as outside checks run it: four PNG frames into a grid, float32 output equal
// to Gemma3ImageProcessorPil's (digest from tools/golden/make_preprocess_goldens.py), the JSON
// line,
// --config, and clear errors.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/sha256.h"
#include "tests/support/run_command.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;
using vlmserve::testing::FixturePath;

using Result = vlmserve::testing::CommandResult;

Result RunPreprocess(const std::string& args) {
  return vlmserve::testing::RunCommand(std::string(VLMSERVE_PREPROCESS_BIN) + " " + args + " 2>&1");
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("vlmserve_pp_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

TEST(PreprocessCliTest, FramesGridMatchesTheProcessor) {
  std::ifstream in(FixturePath("preprocess/goldens.json"));
  const json want = json::parse(in)["cli_frames"];
  std::string args = "--size 56 --out " + TempPath("grid.f32") + " --frames";
  for (const json& f : want["frames"]) args += " " + FixturePath(f);
  Result r = RunPreprocess(args);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json line = json::parse(r.out);
  EXPECT_EQ(line["shape"], want["shape"]);
  EXPECT_EQ(line["num_crops"], 0);
  EXPECT_EQ(line["source"]["width"], 74);  // 2 × 37
  std::ifstream f(TempPath("grid.f32"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  EXPECT_EQ(Sha256::Hex(bytes), want["sha256"].get<std::string>());
  std::filesystem::remove(TempPath("grid.f32"));
}

TEST(PreprocessCliTest, SizeFromConfig) {
  Result r =
      RunPreprocess("--image " + FixturePath("images/jpeg/gray.jpg") + " --config " +
                    FixturePath("configs/tiny-v5-saved.json") + " --out " + TempPath("c.f32"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["shape"], json({1, 3, 56, 56}));  // vision_config.image_size 56
  EXPECT_EQ(std::filesystem::file_size(TempPath("c.f32")), 3u * 56 * 56 * 4);
  std::filesystem::remove(TempPath("c.f32"));
}

TEST(PreprocessCliTest, Errors) {
  const std::string png = FixturePath("images/png/rgb8_p.png");
  Result mixed = RunPreprocess("--size 8 --out /dev/null --frames " + png + " " +
                               FixturePath("images/png/rgb8_i.png"));
  EXPECT_EQ(mixed.exit_code, 1);
  EXPECT_NE(mixed.out.find("frames[1] is 13x11 but frames[0] is 37x23"), std::string::npos)
      << mixed.out;
  Result bad = RunPreprocess("--size 8 --out /dev/null --image " +
                             FixturePath("images/bad/png_bad_crc.png"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("image (" + FixturePath("images/bad/png_bad_crc.png") + "): invalid PNG"),
            std::string::npos)
      << bad.out;
  EXPECT_EQ(RunPreprocess("--size 8 --out /dev/null").exit_code, 2);                     // no input
  EXPECT_EQ(RunPreprocess("--image " + png + " --out /dev/null").exit_code, 2);          // no size
  EXPECT_EQ(RunPreprocess("--image " + png + " --size 8").exit_code, 2);                 // no --out
  EXPECT_EQ(RunPreprocess("--size 8 --out /dev/null --frames a b c d e").exit_code, 2);  // 5 frames
}

}  // namespace
}  // namespace vlmserve
