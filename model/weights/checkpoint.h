// Checkpoint: a model directory's weights, memory-mapped and validated against its Gemma3Config
// before anything uses them (reliability.md G9: model files are untrusted input).
//
// Layout: a single `model.safetensors`, or shards listed by `model.safetensors.index.json`
// (its `weight_map` must agree with the shards' own headers, its `metadata.total_size` with their
// sizes). Shard paths are resolved with realpath and must stay inside the model directory, so an
// index or a symlink cannot make us read other files (note: a Hugging Face cache "snapshots" folder
// links to ../../blobs; point vlmserve at a real copy, e.g. `hf download --local-dir`).
//
// Every tensor's presence and shape are checked against ExpectedTensors(config) — nothing missing,
// nothing unexpected, no two file names mapping to one internal name — before Open returns. A tied
// LM head stored anyway must equal the embedding byte for byte.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/weights/config.h"
#include "model/weights/model_stats.h"
#include "model/weights/safetensors.h"
#include "model/weights/weight_names.h"

namespace vlmserve {

struct CheckpointLimits {
  uint64_t max_index_bytes = 64u << 20;  // the 27B index is ~120 KB
  uint64_t max_shards = 4096;
  SafetensorsLimits safetensors;
};
inline constexpr CheckpointLimits kCheckpointLimits{};

struct Weight {
  std::string name;       // internal name (weight_names.h)
  std::string file_name;  // the name in the file, e.g. "language_model.model.norm.weight"
  const std::string* file = nullptr;  // the shard's path
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;
  Component component = Component::kLanguageModel;
  std::span<const uint8_t> data;  // raw little-endian bytes inside the mapping
  uint64_t numel() const;
};

class Checkpoint {
 public:
  // `model_dir` holds the weights; `config` is its parsed config.json.
  static StatusOr<std::unique_ptr<Checkpoint>> Open(
      const std::string& model_dir, const Gemma3Config& config,
      const CheckpointLimits& limits = kCheckpointLimits);

  // nullptr when the config implies no such tensor.
  const Weight* Find(const std::string& internal_name) const;
  const std::vector<Weight>& weights() const { return weights_; }  // ExpectedTensors order
  const std::vector<std::string>& files() const { return files_; }

  // Parameters per component counted from the tensors actually stored (an explicit tied
  // lm_head copy is not counted: it is the embedding).
  ParameterCounts CountStoredParameters() const;
  // "BF16" when uniform, else e.g. "mixed: BF16 x 880, F32 x 3".
  std::string DTypeSummary() const;
  // Which naming conventions the files used: "hub", "runtime", "transformers v5 save", or several.
  const std::string& naming() const { return naming_; }
  uint64_t total_bytes() const { return total_bytes_; }

  // Replaces tensor `internal_name`'s values (same element count) with `values` stored as
  // `store` (F32 as they are, or BF16 rounded to nearest even once), owned by the checkpoint.
  // How a LoRA adapter's merged weights (lora_adapter.h) reach every runner through the one
  // loading path: stored in the runner's own dtype, they are rounded exactly once.
  Status ReplaceWithFloat(const std::string& internal_name, std::vector<float> values,
                          DType store = DType::kF32);

 private:
  Checkpoint() = default;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::string> files_;
  std::vector<Weight> weights_;
  std::map<std::string, size_t> index_;  // internal name → weights_ position
  std::string naming_;
  uint64_t total_bytes_ = 0;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_;  // ReplaceWithFloat's tensors
};

}  // namespace vlmserve
