// Model directory loading (see model_dir.h).
#include "model/model_dir.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/json_util.h"
#include "model/weights/config_json.h"

namespace vlmserve {
namespace {

namespace fs = std::filesystem;

Status CheckTokenizerFitsModel(const Tokenizer& tok, const Gemma3Config& c,
                               const std::string& where) {
  const int64_t vocab = c.text.vocab_size;
  for (int64_t id = vocab; id < static_cast<int64_t>(tok.size()); ++id) {
    if (!tok.IdToToken(static_cast<int32_t>(id))) continue;
    if (c.has_vision && id == c.image_token_id) continue;
    return InvalidArgumentError(where + ": token id " + std::to_string(id) + " (\"" +
                                *tok.IdToToken(static_cast<int32_t>(id)) +
                                "\") has no row in the model's embedding of " +
                                std::to_string(vocab));
  }
  if (c.has_vision) {
    for (auto [text, id] : {std::pair<const char*, int64_t>{"<start_of_image>", c.boi_token_id},
                            {"<end_of_image>", c.eoi_token_id},
                            {"<image_soft_token>", c.image_token_id}}) {
      if (tok.TokenToId(text) != id) {
        return InvalidArgumentError(where + ": the tokenizer gives " + text + " id " +
                                    std::to_string(tok.TokenToId(text)) + ", config.json says " +
                                    std::to_string(id));
      }
    }
  }
  return Status::Ok();
}

StatusOr<GenerationDefaults> LoadGenerationConfig(const std::string& path, const Gemma3Config& c) {
  GenerationDefaults g;
  for (int64_t id : c.eos_token_ids) g.stop_ids.push_back(static_cast<int32_t>(id));
  if (!fs::exists(path)) return g;
  ASSIGN_OR_RETURN(std::string text, ReadFileBounded(path, 1 << 20));
  ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonBounded(text, 8, path));
  if (!j.is_object()) return InvalidArgumentError(path + ": must be a JSON object");
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    std::vector<int32_t> ids;
    for (const auto& v : it->is_array() ? *it : nlohmann::json::array({*it})) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.text.vocab_size) {
        return InvalidArgumentError(path + ": eos_token_id entries must be ids in the vocabulary");
      }
      ids.push_back(v.get<int32_t>());
    }
    g.stop_ids = ids;
  }
  if (auto it = j.find("do_sample"); it != j.end() && it->is_boolean())
    g.do_sample = it->get<bool>();
  if (auto it = j.find("temperature"); it != j.end() && it->is_number())
    g.temperature = it->get<float>();
  if (auto it = j.find("top_p"); it != j.end() && it->is_number()) g.top_p = it->get<float>();
  if (auto it = j.find("top_k"); it != j.end() && it->is_number_integer())
    g.top_k = it->get<int32_t>();
  return g;
}

}  // namespace

StatusOr<ModelDir> ModelDir::Load(const std::string& dir, const std::string& adapter_dir,
                                  DType merged_dtype) {
  ModelDir m;
  m.path = dir;
  ASSIGN_OR_RETURN(m.config, LoadGemma3Config((fs::path(dir) / "config.json").string()));
  ASSIGN_OR_RETURN(m.checkpoint, Checkpoint::Open(dir, m.config));
  if (!adapter_dir.empty()) {
    ASSIGN_OR_RETURN(std::unique_ptr<LoraAdapter> adapter,
                     LoraAdapter::Load(adapter_dir, m.config));
    RETURN_IF_ERROR(adapter->MergeInto(*m.checkpoint, merged_dtype));
    m.adapter = adapter->info();
  }
  const std::string tok_path = (fs::path(dir) / "tokenizer.json").string();
  ASSIGN_OR_RETURN(m.tokenizer, Tokenizer::Load(tok_path));
  RETURN_IF_ERROR(CheckTokenizerFitsModel(*m.tokenizer, m.config, tok_path));
  ASSIGN_OR_RETURN(
      m.generation,
      LoadGenerationConfig((fs::path(dir) / "generation_config.json").string(), m.config));
  return m;
}

}  // namespace vlmserve
