// The CPU SigLIP tower and projector against transformers (fp32, eager; goldens captured with
// forward hooks by tools/golden/make_vision_goldens.py on tiny configs whose every parameter was
// re-randomised): max |Δ| ≤ 1e-4 · max|ref| on both outputs, and an image's result is the same,
// bit for bit, alone or inside a batch.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include "model/reference/projector.h"
#include "model/reference/siglip.h"
#include "model/weights/checkpoint.h"
#include "model/weights/config_json.h"
#include "model/weights/safetensors.h"
#include "tests/support/golden_tensor.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using vlmserve::testing::FixturePath;

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double max_ref = 0, max_err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(want[i])));
    const double e = std::fabs(double(got[i]) - want[i]);
    if (e > max_err) max_err = e, worst = i;
  }
  EXPECT_LE(max_err, 1e-4 * max_ref)
      << what << ": worst at " << worst << " ours " << got[worst] << " transformers " << want[worst]
      << " (max|ref| " << max_ref << ")";
  std::printf("%s: max|diff| %.3g, max|ref| %.3g, ratio %.3g\n", what.c_str(), max_err, max_ref,
              max_err / max_ref);
}

class VisionGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VisionGoldenTest, MatchesTransformers) {
  const std::string dir = FixturePath("vision/" + GetParam());
  auto config = LoadGemma3Config(dir + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto ck = Checkpoint::Open(dir, *config);
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  auto tower = SiglipVisionTower::Load(**ck, *config);
  ASSERT_TRUE(tower.ok()) << tower.status().ToString();
  auto projector = MultiModalProjector::Load(**ck, *config);
  ASSERT_TRUE(projector.ok()) << projector.status().ToString();

  auto golden = SafetensorsFile::Open(dir + "/goldens.safetensors");
  ASSERT_TRUE(golden.ok()) << golden.status().ToString();
  std::vector<int64_t> px_shape, v_shape, p_shape;
  const auto pixels = testing::GoldenTensor(**golden, "pixel_values", &px_shape);
  const auto want_vision = testing::GoldenTensor(**golden, "vision_output", &v_shape);
  const auto want_proj = testing::GoldenTensor(**golden, "projector_output", &p_shape);
  const int64_t n = px_shape[0];

  const auto t0 = std::chrono::steady_clock::now();
  auto vision = tower->Forward(pixels, n);
  ASSERT_TRUE(vision.ok()) << vision.status().ToString();
  auto proj = projector->Forward(*vision, n);
  ASSERT_TRUE(proj.ok()) << proj.status().ToString();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s: %.2f ms per image (%ld images)\n", GetParam().c_str(), ms / n, n);

  ExpectClose(*vision, want_vision, GetParam() + " vision tower");
  ExpectClose(*proj, want_proj, GetParam() + " projector");
  EXPECT_EQ(static_cast<int64_t>(proj->size()), p_shape[0] * p_shape[1] * p_shape[2]);

  // Each image alone gives exactly its slice of the batch.
  const size_t px_per = pixels.size() / n, v_per = vision->size() / n, p_per = proj->size() / n;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> one(pixels.begin() + i * px_per, pixels.begin() + (i + 1) * px_per);
    auto v1 = tower->Forward(one, 1);
    ASSERT_TRUE(v1.ok());
    auto p1 = projector->Forward(*v1, 1);
    ASSERT_TRUE(p1.ok());
    EXPECT_EQ(std::memcmp(v1->data(), vision->data() + i * v_per, v_per * 4), 0) << "image " << i;
    EXPECT_EQ(std::memcmp(p1->data(), proj->data() + i * p_per, p_per * 4), 0) << "image " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Transformers, VisionGoldenTest,
                         ::testing::Values("pool2", "pool4", "grid6"));

TEST(VisionTest, WrongPixelCountIsAnError) {
  const std::string dir = FixturePath("vision/pool2");
  auto config = LoadGemma3Config(dir + "/config.json");
  auto ck = Checkpoint::Open(dir, *config);
  auto tower = SiglipVisionTower::Load(**ck, *config);
  ASSERT_TRUE(tower.ok());
  std::vector<float> px(3 * 28 * 28 - 1);
  EXPECT_EQ(tower->Forward(px, 1).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vlmserve
