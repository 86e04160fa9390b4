// The CPU reference runner end to end against transformers (fp32, eager, token_type_ids passed;
// goldens from tools/golden/make_decoder_goldens.py on three tiny re-randomised models that cover
// GQA 2:1 and 4:1, query_pre_attn_scalar ≠ head_dim, sliding windows shorter than the prompt,
// linear RoPE on global layers, √D not exact in bf16, two images in one prompt, pan & scan, runtime
// tensor names):
//   the prompt ids and image runs equal Gemma3Processor's; our preprocessing of the PNGs gives the
//   very pixel_values transformers used; all prompt logits within 1e-4 · max|ref|; 16 greedy tokens
//   identical. Then the runner's contracts: batch-independence, extend-by-k = k decode steps,
//   release, and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/image/image.h"
#include "model/image/preprocess.h"
#include "model/model_dir.h"
#include "model/reference/cpu_runner.h"
#include "model/text/prompt.h"
#include "model/weights/safetensors.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;
using vlmserve::testing::FixturePath;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<float> Tensor(const SafetensorsFile& f, const std::string& name) {
  for (const TensorEntry& t : f.header().tensors) {
    if (t.name != name) continue;
    std::vector<float> out(t.numel());
    std::memcpy(out.data(), f.Data(t).data(), t.nbytes());
    return out;
  }
  ADD_FAILURE() << "no tensor " << name;
  return {};
}

struct Case {
  std::string dir;
  json golden;
  ModelDir model;
  std::unique_ptr<CpuModelRunner> runner;
  Prompt prompt;
  std::vector<float> pixels;  // transformers' pixel_values
};

std::unique_ptr<Case> LoadCase(const std::string& name) {
  auto c = std::make_unique<Case>();
  c->dir = FixturePath("decoder/" + name);
  c->golden = json::parse(ReadFile(c->dir + "/goldens.json"));
  auto loaded = ModelDir::Load(c->dir);
  EXPECT_TRUE(loaded.ok()) << loaded.status().ToString();
  if (!loaded.ok()) return nullptr;
  c->model = std::move(loaded).value();
  auto r = CpuModelRunner::Create(*c->model.checkpoint, c->model.config);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  c->runner = std::move(r).value();
  // The prompt, from the golden's messages and crop counts.
  std::vector<PromptMessage> messages;
  const auto crops = c->golden["num_crops"].get<std::vector<int>>();
  size_t image = 0;
  for (const json& m : c->golden["messages"]) {
    PromptMessage msg;
    msg.role = m["role"] == "system" ? Role::kSystem
               : m["role"] == "user" ? Role::kUser
                                     : Role::kAssistant;
    if (m["content"].is_string()) {
      msg.parts.push_back(PromptPart::Text(m["content"]));
    } else {
      for (const json& p : m["content"]) {
        if (p["type"] == "image")
          msg.parts.push_back(PromptPart::Image(crops.at(image++)));
        else
          msg.parts.push_back(PromptPart::Text(p["text"]));
      }
    }
    messages.push_back(std::move(msg));
  }
  auto builder = PromptBuilder::Create(*c->model.tokenizer, c->model.config.mm_tokens_per_image);
  EXPECT_TRUE(builder.ok());
  auto prompt = builder->Build(messages);
  EXPECT_TRUE(prompt.ok()) << prompt.status().ToString();
  c->prompt = std::move(prompt).value();
  auto g = SafetensorsFile::Open(c->dir + "/goldens.safetensors");
  EXPECT_TRUE(g.ok());
  c->pixels = Tensor(**g, "pixel_values");
  return c;
}

class DecoderGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderGoldenTest, PromptPixelsLogitsAndGreedyTokensMatchTransformers) {
  auto c = LoadCase(GetParam());
  ASSERT_TRUE(c);
  // 1. Prompt ids and image runs: the processor's.
  EXPECT_EQ(c->prompt.ids, c->golden["input_ids"].get<std::vector<int32_t>>());
  const auto runs = c->golden["image_runs"].get<std::vector<std::vector<size_t>>>();
  ASSERT_EQ(c->prompt.images.size(), runs.size());
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(c->prompt.images[i].first, runs[i][0]);

  // 2. Our preprocessing of the PNGs gives transformers' pixel_values, bit for bit.
  std::vector<float> ours;
  for (const json& f : c->golden["images"]) {
    const std::string bytes = ReadFile(c->dir + "/" + f.get<std::string>());
    auto img = DecodeImage({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                           kDefaultImageLimits, f);
    ASSERT_TRUE(img.ok());
    PreprocessOptions po;
    po.size = static_cast<uint32_t>(c->model.config.vision.image_size);
    po.pan_and_scan = c->golden["pan_and_scan"];
    auto pv = PreprocessImage(*img, po);
    ASSERT_TRUE(pv.ok());
    ours.insert(ours.end(), pv->values.begin(), pv->values.end());
  }
  ASSERT_EQ(ours.size(), c->pixels.size());
  EXPECT_EQ(std::memcmp(ours.data(), c->pixels.data(), ours.size() * 4), 0);

  // 3. Every prompt position's logits.
  const int64_t n_img = static_cast<int64_t>(c->prompt.images.size());
  auto soft = c->runner->EncodeImages(c->pixels, n_img);
  ASSERT_TRUE(soft.ok()) << soft.status().ToString();
  PrefillRequest pre{1, c->prompt.ids, c->prompt.token_type_ids, *soft, true};
  auto logits = c->runner->Prefill(std::span<const PrefillRequest>(&pre, 1));
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  auto g = SafetensorsFile::Open(c->dir + "/goldens.safetensors");
  const std::vector<float> want = Tensor(**g, "prompt_logits");
  const std::vector<float>& got = (*logits)[0];
  ASSERT_EQ(got.size(), want.size());
  double max_ref = 0, max_err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(want[i])));
    if (std::fabs(double(got[i]) - want[i]) > max_err)
      max_err = std::fabs(double(got[i]) - want[i]), worst = i;
  }
  const int64_t vocab = c->model.config.text.vocab_size;
  EXPECT_LE(max_err, 1e-4 * max_ref)
      << "worst at position " << worst / vocab << ", token " << worst % vocab << ": ours "
      << got[worst] << ", transformers " << want[worst];
  std::printf("%s: prompt logits max|diff| %.3g, max|ref| %.3g (ratio %.3g)\n", GetParam().c_str(),
              max_err, max_ref, max_err / max_ref);

  // 4. 16 greedy tokens through the KV cache.
  std::vector<int32_t> greedy;
  std::vector<float> last(got.end() - vocab, got.end());
  for (int step = 0; step < 16; ++step) {
    const int32_t next =
        static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    greedy.push_back(next);
    const std::pair<SequenceId, int32_t> d{1, next};
    auto l = c->runner->Decode(std::span<const std::pair<SequenceId, int32_t>>(&d, 1));
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    last = (*l)[0];
  }
  EXPECT_EQ(greedy, c->golden["greedy_tokens"].get<std::vector<int32_t>>());
}

INSTANTIATE_TEST_SUITE_P(Transformers, DecoderGoldenTest,
                         ::testing::Values("gqa2_two_images", "gqa4_pan_scan_runtime_names",
                                           "pool16_six_layers"));

// A sequence's logits do not depend on what else is in the batch: bitwise.
TEST(CpuRunnerTest, SequenceAloneOrInABatchIsBitwiseIdentical) {
  auto a = LoadCase("gqa2_two_images");
  ASSERT_TRUE(a);
  auto soft = a->runner->EncodeImages(a->pixels, static_cast<int64_t>(a->prompt.images.size()));
  ASSERT_TRUE(soft.ok());
  const std::vector<int32_t> other_ids = {2, 260, 357, 358, 300, 301, 261};
  const std::vector<uint8_t> other_tt(other_ids.size(), 0);

  PrefillRequest alone{7, a->prompt.ids, a->prompt.token_type_ids, *soft, true};
  auto l1 = a->runner->Prefill(std::span<const PrefillRequest>(&alone, 1));
  ASSERT_TRUE(l1.ok());
  auto b = LoadCase("gqa2_two_images");
  std::vector<PrefillRequest> batch = {{1, other_ids, other_tt, {}, false},
                                       {7, b->prompt.ids, b->prompt.token_type_ids, *soft, true},
                                       {3, other_ids, other_tt, {}, true}};
  auto l2 = b->runner->Prefill(batch);
  ASSERT_TRUE(l2.ok());
  ASSERT_EQ((*l1)[0].size(), (*l2)[1].size());
  EXPECT_EQ(std::memcmp((*l1)[0].data(), (*l2)[1].data(), (*l1)[0].size() * 4), 0);

  // And decode steps, alone vs next to two other sequences.
  for (int32_t token : {5, 77, 400}) {
    const std::pair<SequenceId, int32_t> one{7, token};
    auto d1 = a->runner->Decode(std::span<const std::pair<SequenceId, int32_t>>(&one, 1));
    const std::vector<std::pair<SequenceId, int32_t>> three = {{3, 11}, {7, token}, {1, 12}};
    auto d2 = b->runner->Decode(three);
    ASSERT_TRUE(d1.ok() && d2.ok());
    EXPECT_EQ(std::memcmp((*d1)[0].data(), (*d2)[1].data(), (*d1)[0].size() * 4), 0) << token;
  }
  EXPECT_EQ(b->runner->live_sequences(), 3u);
  b->runner->Release(3);
  EXPECT_EQ(b->runner->live_sequences(), 2u);
}

// Appending k tokens in one Extend gives, bit for bit, the logits of k single decode steps.
TEST(CpuRunnerTest, ExtendByKEqualsKDecodeSteps) {
  auto a = LoadCase("gqa4_pan_scan_runtime_names");
  auto b = LoadCase("gqa4_pan_scan_runtime_names");
  ASSERT_TRUE(a && b);
  auto soft = a->runner->EncodeImages(a->pixels, static_cast<int64_t>(a->prompt.images.size()));
  ASSERT_TRUE(soft.ok());
  PrefillRequest pa{1, a->prompt.ids, a->prompt.token_type_ids, *soft, false};
  PrefillRequest pb{1, b->prompt.ids, b->prompt.token_type_ids, *soft, false};
  ASSERT_TRUE(a->runner->Prefill(std::span<const PrefillRequest>(&pa, 1)).ok());
  ASSERT_TRUE(b->runner->Prefill(std::span<const PrefillRequest>(&pb, 1)).ok());
  const std::vector<int32_t> forced = {373, 304, 351,  368, 367,
                                       12,  99,  1000, 4,   600};  // > window 8
  ExtendRequest ext{1, forced, true};
  auto all = a->runner->Extend(std::span<const ExtendRequest>(&ext, 1));
  ASSERT_TRUE(all.ok());
  const size_t vocab = static_cast<size_t>(a->model.config.text.vocab_size);
  ASSERT_EQ((*all)[0].size(), forced.size() * vocab);
  for (size_t i = 0; i < forced.size(); ++i) {
    const std::pair<SequenceId, int32_t> d{1, forced[i]};
    auto step = b->runner->Decode(std::span<const std::pair<SequenceId, int32_t>>(&d, 1));
    ASSERT_TRUE(step.ok());
    EXPECT_EQ(std::memcmp((*all)[0].data() + i * vocab, (*step)[0].data(), vocab * 4), 0)
        << "token " << i;
  }
}

TEST(CpuRunnerTest, Errors) {
  auto c = LoadCase("pool16_six_layers");
  ASSERT_TRUE(c);
  const std::pair<SequenceId, int32_t> d{42, 5};
  EXPECT_EQ(
      c->runner->Decode(std::span<const std::pair<SequenceId, int32_t>>(&d, 1)).status().code(),
      StatusCode::kNotFound);
  const std::vector<int32_t> bad = {2, 5000};
  const std::vector<uint8_t> tt(2, 0);
  PrefillRequest p{1, bad, tt, {}, false};
  auto r = c->runner->Prefill(std::span<const PrefillRequest>(&p, 1));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "token id 5000 at position 1 is outside the vocabulary of 1216");
  const std::vector<uint8_t> soft_tt = {0, 1};
  PrefillRequest q{1, bad, soft_tt, {}, false};  // one soft position but no soft tokens
  EXPECT_EQ(c->runner->Prefill(std::span<const PrefillRequest>(&q, 1)).status().message(),
            "soft_tokens holds 0 values for 1 image positions of width 64");
  EXPECT_EQ(c->runner->live_sequences(), 0u);  // nothing half-started
}

}  // namespace
}  // namespace vlmserve
