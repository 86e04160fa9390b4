// The demo model (models/demo, the server's built-in model) against transformers, on prompts the
// agent sends on fresh game seeds never used in training (goldens: tools/demo/make_goldens.py,
// fp32, eager attention, token_type_ids):
//   our processor turns the four frames into transformers' input ids and, bit for bit, its
//   pixel_values (the server's path: PNG frames → 2×2 grid → resize → normalise); the last prompt
//   position's logits within 1e-4 · max|ref|; greedy decoding in the CPU runner gives transformers'
//   tokens up to and including <end_of_turn>. Then through the engine, with the default action
//   grammar and jump-forward (what Predict runs): the served action is exactly transformers' free
//   greedy text — the grammar and the forced tokens change nothing for a model that already
//   answers in the schema.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/serve_engine.h"
#include "model/model_dir.h"
#include "model/processor.h"
#include "model/reference/cpu_runner.h"
#include "model/weights/safetensors.h"
#include "tests/support/golden_tensor.h"
#include "tests/support/step_driver.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ModelPath() { return testing::SourceDir() + "/models/demo"; }
std::string GoldenDir() { return testing::FixturePath("demo"); }

ImageInput Frames(const json& c) {
  ImageInput in;
  for (const json& f : c["frames"]) {
    ImageBytes b;
    b.bytes = ReadAll(GoldenDir() + "/" + f.get<std::string>());
    in.frames.push_back(std::move(b));
  }
  return in;
}

TEST(DemoModelTest, ProcessorLogitsAndGreedyTokensMatchTransformers) {
  const json golden = json::parse(ReadAll(GoldenDir() + "/goldens.json"));
  auto model = ModelDir::Load(ModelPath());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto runner = CpuModelRunner::Create(*model->checkpoint, model->config);
  ASSERT_TRUE(runner.ok()) << runner.status().ToString();
  auto processor = Gemma3Processor::Create(*model->tokenizer, model->config);
  ASSERT_TRUE(processor.ok()) << processor.status().ToString();
  auto g = SafetensorsFile::Open(GoldenDir() + "/goldens.safetensors");
  ASSERT_TRUE(g.ok());
  const std::vector<float> pixels = testing::GoldenTensor(**g, "pixel_values");
  const std::vector<float> last = testing::GoldenTensor(**g, "last_logits");
  const size_t n_cases = golden["cases"].size();
  ASSERT_GE(n_cases, 10u);
  const size_t image_floats = pixels.size() / n_cases;
  const size_t vocab = static_cast<size_t>(model->config.text.vocab_size);
  ASSERT_EQ(last.size(), n_cases * vocab);
  const std::string instruction = golden["instruction"];

  testing::StepDriver driver(**runner);
  for (size_t k = 0; k < n_cases; ++k) {
    SCOPED_TRACE("case " + std::to_string(k));
    const json& c = golden["cases"][k];
    const ImageInput frames = Frames(c);
    ProcessorInput in;
    in.images = &frames;
    in.prompt = instruction;
    auto inputs = processor->Process(in);
    ASSERT_TRUE(inputs.ok()) << inputs.status().ToString();
    EXPECT_EQ(inputs->prompt.ids, c["input_ids"].get<std::vector<int32_t>>());
    ASSERT_EQ(inputs->prompt.images.size(), 1u);
    EXPECT_EQ(inputs->prompt.images[0].first, c["image_runs"][0][0].get<size_t>());
    ASSERT_EQ(inputs->pixel_values.size(), image_floats);
    EXPECT_EQ(std::memcmp(inputs->pixel_values.data(), pixels.data() + k * image_floats,
                          image_floats * sizeof(float)),
              0)
        << "pixel_values differ from transformers'";

    auto images = (*runner)->EncodeImages(inputs->pixel_values, 1);
    ASSERT_TRUE(images.ok()) << images.status().ToString();
    const SequenceId seq = static_cast<SequenceId>(k + 1);
    auto logits = driver.Prefill(seq, inputs->prompt.ids, inputs->prompt.token_type_ids, *images, 0,
                                 false);
    ASSERT_TRUE(logits.ok()) << logits.status().ToString();
    double max_ref = 0, max_err = 0;
    for (size_t i = 0; i < vocab; ++i) {
      const double want = last[k * vocab + i];
      max_ref = std::max(max_ref, std::fabs(want));
      max_err = std::max(max_err, std::fabs((*logits)[i] - want));
    }
    EXPECT_LE(max_err, 1e-4 * max_ref);

    const auto want = c["greedy_tokens"].get<std::vector<int32_t>>();
    std::vector<int32_t> greedy{static_cast<int32_t>(
        std::max_element(logits->begin(), logits->end()) - logits->begin())};
    while (greedy.size() < want.size()) {
      auto out = driver.Extend(seq, std::span<const int32_t>(&greedy.back(), 1), false);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      greedy.push_back(out->token);
    }
    EXPECT_EQ(greedy, want) << "transformers: " << c["greedy_text"];
    driver.Release(seq);
    (*runner)->ReleaseImages(*images);
  }
  EXPECT_EQ(driver.kv().counters().live_sequences, 0u);
}

TEST(DemoModelTest, ServedActionIsTransformersGreedyAnswer) {
  const json golden = json::parse(ReadAll(GoldenDir() + "/goldens.json"));
  auto engine = ServeEngine::Load(ModelPath(), "cpu", {});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  int expert = 0;
  for (const json& c : golden["cases"]) {
    ServeRequest r;
    r.images = Frames(c);
    r.prompt = golden["instruction"];
    auto out = (*engine)->RunNow(r);  // the defaults: greedy, ACTION_JSON, jump-forward
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(out->text, c["greedy_text"].get<std::string>());
    EXPECT_EQ(out->finish, FinishReason::kStop);
    expert += out->action.button == c["expert_action"]["button"].get<std::string>();
  }
  std::printf("demo model: the expert's button on %d of %zu golden cases\n", expert,
              golden["cases"].size());
}

}  // namespace
}  // namespace vlmserve
