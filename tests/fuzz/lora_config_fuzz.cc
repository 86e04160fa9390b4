// Fuzz target: a LoRA adapter's adapter_config.json — parsing, and PEFT's targeting rules (regexes
// from the file included) run on module names of every transformers era. Built with libFuzzer
// under clang (VLMSERVE_FUZZ=ON) and, in every build, linked with fuzz_replay_main.cc to replay
// tests/fuzz/corpus/lora_config as an ordinary test.
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/weights/lora_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const kModules[] = {
      "language_model.model.layers.0.self_attn.q_proj",
      "model.language_model.layers.3.mlp.down_proj",
      "model.vision_tower.vision_model.encoder.layers.26.self_attn.out_proj",
      "model.vision_tower.encoder.layers.1.mlp.fc1",
      "lm_head",
      "model.layers.33.mlp.gate_proj",
  };
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = vlmserve::ParseLoraConfig(text, "fuzz");
  if (config.ok()) {
    for (const char* m : kModules) {
      if (config->Targets(m)) (void)config->ScaleFor(m);
      (void)config->RankFor(m);
    }
  }
  return 0;
}
