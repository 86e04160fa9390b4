// The CPU reference runner end to end against transformers (fp32, eager, token_type_ids passed;
// goldens from tools/golden/make_decoder_goldens.py on three tiny re-randomised models that cover
// GQA 2:1 and 4:1, query_pre_attn_scalar ≠ head_dim, sliding windows shorter than the prompt,
// linear RoPE on global layers, √D not exact in bf16, two images in one prompt, pan & scan, runtime
// tensor names):
//   the prompt ids and image runs equal Gemma3Processor's; our preprocessing of the PNGs gives the
//   very pixel_values transformers used; all prompt logits within 1e-4 · max|ref| — prefilled in
//   one step and in chunks —; 16 greedy tokens, sampled inside the runner, identical. Then Step's
//   contracts: bitwise batch invariance, chunked prefill = one prefill, a forced run of k tokens =
//   k decode steps, sliding pages released behind the window never read again, masked sampling,
//   and errors that change nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/kv_layout.h"
#include "model/image/image.h"
#include "model/image/preprocess.h"
#include "model/model_dir.h"
#include "model/reference/cpu_runner.h"
#include "model/text/prompt.h"
#include "model/weights/safetensors.h"
#include "tests/support/golden_tensor.h"
#include "tests/kernels/test_rng.h"
#include "tests/support/step_driver.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;
using vlmserve::testing::FixturePath;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
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
  c->pixels = testing::GoldenTensor(**g, "pixel_values");
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

  // 3. Every prompt position's logits, prefilled in one step and in chunks of 7 (chunks never
  // split an image): within tolerance of transformers, and bitwise equal to each other.
  const int64_t n_img = static_cast<int64_t>(c->prompt.images.size());
  auto images = c->runner->EncodeImages(c->pixels, n_img);
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  // One driver (one KV manager) per runner: sequences 1, 2 and 3 live side by side in its pools.
  testing::StepDriver driver(*c->runner);
  auto logits = driver.Prefill(1, c->prompt.ids, c->prompt.token_type_ids, *images, 0, true);
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  auto logits7 = driver.Prefill(2, c->prompt.ids, c->prompt.token_type_ids, *images, 7, true);
  ASSERT_TRUE(logits7.ok()) << logits7.status().ToString();
  ASSERT_EQ(logits->size(), logits7->size());
  EXPECT_EQ(std::memcmp(logits->data(), logits7->data(), logits->size() * 4), 0)
      << "chunked prefill differs from one-step prefill";
  auto g = SafetensorsFile::Open(c->dir + "/goldens.safetensors");
  const std::vector<float> want = testing::GoldenTensor(**g, "prompt_logits");
  const std::vector<float>& got = *logits;
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

  // 4. 16 greedy tokens, sampled inside the runner, decode rows through the paged KV cache.
  testing::StepDriver& gen = driver;
  gen.Release(1);
  gen.Release(2);
  std::vector<int32_t> greedy;
  {
    auto last = gen.Prefill(3, c->prompt.ids, c->prompt.token_type_ids, *images, 0, false);
    ASSERT_TRUE(last.ok()) << last.status().ToString();
    greedy.push_back(
        static_cast<int32_t>(std::max_element(last->begin(), last->end()) - last->begin()));
  }
  for (int step = 1; step < 16; ++step) {
    auto out = gen.Extend(3, std::span<const int32_t>(&greedy.back(), 1), false);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(out->token,
              static_cast<int32_t>(std::max_element(out->logits.begin(), out->logits.end()) -
                                   out->logits.begin()));
    greedy.push_back(out->token);
  }
  EXPECT_EQ(greedy, c->golden["greedy_tokens"].get<std::vector<int32_t>>());
  gen.Release(3);
  c->runner->ReleaseImages(*images);
  EXPECT_EQ(gen.kv().counters().live_sequences, 0u);
  EXPECT_EQ(gen.kv().counters().full_pages_used + gen.kv().counters().sliding_pages_used, 0);
  EXPECT_EQ(c->runner->live_image_batches(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Transformers, DecoderGoldenTest,
                         ::testing::Values("gqa2_two_images", "gqa4_pan_scan_runtime_names",
                                           "pool16_six_layers"));

// A sequence's logits do not depend on what else is in the step, nor on which pages it got:
// bitwise, for prefill rows and for decode rows.
TEST(CpuRunnerTest, SequenceAloneOrInABatchIsBitwiseIdentical) {
  auto c = LoadCase("gqa2_two_images"), c2 = LoadCase("gqa2_two_images");  // two runners
  ASSERT_TRUE(c && c2);
  const int64_t n_img = static_cast<int64_t>(c->prompt.images.size());
  auto images = c->runner->EncodeImages(c->pixels, n_img);
  auto images2 = c2->runner->EncodeImages(c2->pixels, n_img);
  ASSERT_TRUE(images.ok() && images2.ok());
  const std::vector<int32_t> other_ids = {2, 260, 357, 358, 300, 301, 261};

  testing::StepDriver alone(*c->runner), batch(*c2->runner);
  auto l1 = alone.Prefill(7, c->prompt.ids, c->prompt.token_type_ids, *images, 0, true);
  ASSERT_TRUE(l1.ok()) << l1.status().ToString();

  std::vector<ImageRef> refs;
  for (int64_t i = 0; i < n_img; ++i) refs.push_back({*images2, i});
  StepRow r1 = batch.Row(1, other_ids, LogitsMode::kNone);
  r1.sample = false;
  StepRow r7 = batch.Row(7, c->prompt.ids, LogitsMode::kAll);
  r7.token_types = c->prompt.token_type_ids;
  r7.images = refs;
  StepRow r3 = batch.Row(3, other_ids, LogitsMode::kLast);
  auto l2 = batch.Run({r1, r7, r3});
  ASSERT_TRUE(l2.ok()) << l2.status().ToString();
  ASSERT_EQ(l1->size(), (*l2)[1].logits.size());
  EXPECT_EQ(std::memcmp(l1->data(), (*l2)[1].logits.data(), l1->size() * 4), 0);
  EXPECT_NE(batch.kv().full_table(7), alone.kv().full_table(7)) << "the test should move pages";

  // And decode steps, alone vs between two other sequences (their draws differ too).
  for (int32_t token : {5, 77, 400}) {
    auto d1 = alone.Extend(7, std::span<const int32_t>(&token, 1), false);
    const int32_t t3 = 11, t1 = 12;
    auto d2 = batch.Run({batch.Row(3, std::span<const int32_t>(&t3, 1), LogitsMode::kLast),
                         batch.Row(7, std::span<const int32_t>(&token, 1), LogitsMode::kLast),
                         batch.Row(1, std::span<const int32_t>(&t1, 1), LogitsMode::kLast)});
    ASSERT_TRUE(d1.ok() && d2.ok());
    EXPECT_EQ(std::memcmp(d1->logits.data(), (*d2)[1].logits.data(), d1->logits.size() * 4), 0)
        << token;
    EXPECT_EQ(d1->token, (*d2)[1].token);
  }
  EXPECT_EQ(batch.kv().counters().live_sequences, 3u);
  batch.Release(3);
  EXPECT_EQ(batch.kv().counters().live_sequences, 2u);
}

// Prefill in chunks of any size gives bitwise the logits of one prefill (an image is never split:
// a chunk size below an image's soft tokens makes that image its own chunk).
TEST(CpuRunnerTest, ChunkedPrefillIsBitwiseOnePrefill) {
  for (const char* name : {"gqa2_two_images", "pool16_six_layers"}) {
    auto c = LoadCase(name);
    ASSERT_TRUE(c);
    auto images = c->runner->EncodeImages(c->pixels, static_cast<int64_t>(c->prompt.images.size()));
    ASSERT_TRUE(images.ok());
    testing::StepDriver d(*c->runner);
    auto want = d.Prefill(1, c->prompt.ids, c->prompt.token_type_ids, *images, 0, true);
    ASSERT_TRUE(want.ok());
    SequenceId seq = 1;
    for (int64_t chunk : {1, 3, 16, 40}) {
      auto got = d.Prefill(++seq, c->prompt.ids, c->prompt.token_type_ids, *images, chunk, true);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_EQ(got->size(), want->size());
      EXPECT_EQ(std::memcmp(got->data(), want->data(), want->size() * 4), 0)
          << name << " in chunks of " << chunk;
    }
  }
}

// A forced run of k tokens in one decode row gives, bit for bit, the logits of k single steps
// (past the sliding window of 8).
TEST(CpuRunnerTest, ForcedRunOfKEqualsKDecodeSteps) {
  auto c = LoadCase("gqa4_pan_scan_runtime_names");
  ASSERT_TRUE(c);
  auto images = c->runner->EncodeImages(c->pixels, static_cast<int64_t>(c->prompt.images.size()));
  ASSERT_TRUE(images.ok());
  testing::StepDriver d(*c->runner);  // sequences 1 and 2 side by side
  ASSERT_TRUE(d.Prefill(1, c->prompt.ids, c->prompt.token_type_ids, *images, 0, false).ok());
  ASSERT_TRUE(d.Prefill(2, c->prompt.ids, c->prompt.token_type_ids, *images, 0, false).ok());
  const std::vector<int32_t> forced = {373, 304, 351, 368, 367, 12, 99, 1000, 4, 600};
  auto all = d.Extend(1, forced, true);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  const size_t vocab = static_cast<size_t>(c->model.config.text.vocab_size);
  ASSERT_EQ(all->logits.size(), forced.size() * vocab);
  for (size_t i = 0; i < forced.size(); ++i) {
    auto step = d.Extend(2, std::span<const int32_t>(&forced[i], 1), false);
    ASSERT_TRUE(step.ok());
    EXPECT_EQ(std::memcmp(all->logits.data() + i * vocab, step->logits.data(), vocab * 4), 0)
        << "token " << i;
  }
}

// Sliding layers free their pages behind the window as the sequence grows, and those pages are
// never read again: the logits equal, bitwise, a run that kept every page.
TEST(CpuRunnerTest, SlidingPagesBehindTheWindowAreReleasedAndNeverRead) {
  // The window is 8 here: the prompt alone is far past it.
  auto c = LoadCase("gqa4_pan_scan_runtime_names"), c2 = LoadCase("gqa4_pan_scan_runtime_names");
  ASSERT_TRUE(c && c2);
  const int64_t window = c->model.config.text.sliding_window;
  const int64_t n_img = static_cast<int64_t>(c->prompt.images.size());
  auto images = c->runner->EncodeImages(c->pixels, n_img);
  auto images2 = c2->runner->EncodeImages(c2->pixels, n_img);
  ASSERT_TRUE(images.ok() && images2.ok());
  testing::StepDriver released(*c->runner), kept(*c2->runner, /*release_window=*/false);
  // Short-lived sequences on the releasing runner take the released pages and overwrite them.
  const std::vector<int32_t> filler(40, 300);
  ASSERT_TRUE(released.Prefill(1, c->prompt.ids, c->prompt.token_type_ids, *images, 0, false).ok());
  ASSERT_TRUE(kept.Prefill(1, c->prompt.ids, c->prompt.token_type_ids, *images2, 0, false).ok());
  int64_t max_sliding = 0;
  for (int32_t t = 0; t < 3 * window; ++t) {
    const int32_t token = 100 + t % 50;
    auto a = released.Extend(1, std::span<const int32_t>(&token, 1), false);
    auto b = kept.Extend(1, std::span<const int32_t>(&token, 1), false);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE(released.Extend(100 + t, filler, false).ok());  // reuses what was released
    released.Release(100 + t);
    ASSERT_EQ(std::memcmp(a->logits.data(), b->logits.data(), a->logits.size() * 4), 0) << t;
    max_sliding = std::max(max_sliding, released.kv().counters().sliding_pages_used);
  }
  const int64_t length = released.kv().length(1);
  std::printf("length %lld, window %lld: sliding pages in use at most %lld, full pages %lld\n",
              static_cast<long long>(length), static_cast<long long>(window),
              static_cast<long long>(max_sliding),
              static_cast<long long>(released.kv().counters().full_pages_used));
  EXPECT_LE(max_sliding, (window + 2 * kv::kPageTokens - 2) / kv::kPageTokens + 1);
  EXPECT_EQ(released.kv().counters().full_pages_used, kv::PagesFor(length));
  released.Release(1);
  EXPECT_EQ(released.kv().counters().sliding_pages_used, 0);
  EXPECT_EQ(released.kv().counters().full_pages_used, 0);
}

// Masked sampling inside the runner never returns a disallowed id; with one id allowed it returns
// that id; greedy picks the best allowed one.
TEST(CpuRunnerTest, MaskedSamplingReturnsOnlyAllowedIds) {
  auto c = LoadCase("pool16_six_layers");
  ASSERT_TRUE(c);
  const int64_t vocab = c->model.config.text.vocab_size;
  testing::StepDriver d(*c->runner);
  const std::vector<int32_t> prompt = {2, 260, 357, 358};
  auto last = d.Extend(1, prompt, false);
  ASSERT_TRUE(last.ok());
  testing::Rng rng(3);
  for (int trial = 0; trial < 24; ++trial) {
    std::vector<uint32_t> mask(MaskWords(vocab), 0);
    const int allowed = 1 + static_cast<int>(rng.Next() % 40);
    for (int i = 0; i < allowed; ++i) {
      const int64_t id = static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(vocab));
      mask[id >> 5] |= 1u << (id & 31);
    }
    const int32_t token = 400 + trial;
    StepRow r = d.Row(1, std::span<const int32_t>(&token, 1), LogitsMode::kLast);
    r.allowed = mask.data();
    r.sampling.temperature = trial % 2 ? 1.5f : 0.f;
    r.sampling.seed = static_cast<uint64_t>(trial);
    r.top_logprobs = 3;
    auto out = d.Run({r});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    const StepOutput& o = (*out)[0];
    EXPECT_TRUE(MaskAllows(mask.data(), o.token)) << "trial " << trial << ": token " << o.token;
    EXPECT_LE(o.logprob, 0.f);
    for (const auto& [id, lp] : o.top_logprobs) EXPECT_TRUE(MaskAllows(mask.data(), id));
    if (r.sampling.temperature == 0.f) {
      for (int64_t id = 0; id < vocab; ++id) {
        if (MaskAllows(mask.data(), id)) {
          EXPECT_GE(o.logits[o.token], o.logits[id]);
        }
      }
      EXPECT_EQ(o.top_logprobs[0].first, o.token);
    }
  }
}

// Every bad row is refused before anything runs: the batch fails as a whole.
TEST(CpuRunnerTest, BadRowsAreRefusedBeforeAnythingRuns) {
  auto c = LoadCase("pool16_six_layers");
  ASSERT_TRUE(c);
  testing::StepDriver d(*c->runner);
  const std::vector<int32_t> bad = {2, 5000};
  auto r = d.Extend(1, bad, false);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("token id 5000 at position 1 is outside the vocabulary of "
                                      "1216"),
            std::string::npos)
      << r.status().message();
  const std::vector<int32_t> two = {2, 3};
  const std::vector<uint8_t> split = {0, 1};  // one soft token: half an image
  StepRow row = d.Row(2, two, LogitsMode::kNone);
  row.token_types = split;
  auto s = d.Run({row});
  EXPECT_NE(s.status().message().find("a prefill chunk must not split an image"), std::string::npos)
      << s.status().message();
  const std::vector<uint8_t> image(16, 1);
  const std::vector<int32_t> soft(16, 0);
  const ImageRef missing{12345, 0};
  StepRow img = d.Row(3, soft, LogitsMode::kNone);
  img.token_types = image;
  img.images = std::span<const ImageRef>(&missing, 1);
  EXPECT_NE(d.Run({img}).status().message().find("no encoded images with handle 12345"),
            std::string::npos);
  std::vector<uint32_t> none(MaskWords(1216), 0);
  StepRow masked = d.Row(4, two, LogitsMode::kNone);
  masked.allowed = none.data();
  EXPECT_NE(d.Run({masked}).status().message().find("allows no token"), std::string::npos);
  // A row whose table does not cover its positions, and one naming a page outside the pool.
  StepRow no_table;
  no_table.sequence = 5;
  no_table.tokens = two;
  EXPECT_NE(c->runner->Step(std::span<const StepRow>(&no_table, 1))
                .status()
                .message()
                .find("block table has 0 pages"),
            std::string::npos);
  const std::vector<int32_t> far = {1 << 30};
  no_table.full_table = far;
  no_table.sliding_table = far;
  EXPECT_NE(c->runner->Step(std::span<const StepRow>(&no_table, 1))
                .status()
                .message()
                .find("not one of the pool's"),
            std::string::npos);
}

}  // namespace
}  // namespace vlmserve
