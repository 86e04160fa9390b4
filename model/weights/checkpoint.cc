// Checkpoint loading and validation (see checkpoint.h).
#include "model/weights/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "common/checked_math.h"
#include "common/json_util.h"
#include "kernels/cpu/bf16.h"

namespace vlmserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    if (errno == ENOENT) return NotFoundError(path + ": no such file");
    return InvalidArgumentError(path + ": cannot resolve: " + std::strerror(errno));
  }
  return std::string(buf);
}

// `dir_real` + "/" + `name`, resolved; it must exist and stay inside `dir_real`.
StatusOr<std::string> ResolveInside(const std::string& dir_real, const std::string& name,
                                    const std::string& listed_by) {
  if (name.empty() || name.find('\0') != std::string::npos) {
    return InvalidArgumentError(listed_by + ": empty or invalid file name");
  }
  const std::string joined = (fs::path(dir_real) / name).string();
  auto real = RealPath(joined);
  if (!real.ok()) {
    if (real.status().code() == StatusCode::kNotFound) {
      return NotFoundError(listed_by + " names \"" + name + "\", which does not exist (" + joined +
                           ")");
    }
    return real.status();
  }
  if (real->rfind(dir_real + "/", 0) != 0) {
    return InvalidArgumentError(listed_by + " names \"" + name + "\", which resolves to " + *real +
                                ", outside the model directory " + dir_real);
  }
  return real;
}

struct IndexFile {
  std::map<std::string, std::string> weight_map;  // tensor name in file → shard file name
  std::optional<uint64_t> total_size;
};

StatusOr<IndexFile> ReadIndex(const std::string& path, const CheckpointLimits& lim) {
  ASSIGN_OR_RETURN(std::string text, ReadFileBounded(path, lim.max_index_bytes));
  ASSIGN_OR_RETURN(json j, ParseJsonBounded(text, 4, path));
  if (!j.is_object()) return InvalidArgumentError(path + ": must be a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) {
    return InvalidArgumentError(path + ": \"weight_map\" is missing or not an object");
  }
  IndexFile idx;
  for (const auto& [name, shard] : wm->items()) {
    if (!shard.is_string()) {
      return InvalidArgumentError(path + ": weight_map[\"" + name +
                                  "\"] must be a file name string");
    }
    idx.weight_map[name] = shard.get<std::string>();
  }
  if (idx.weight_map.empty()) return InvalidArgumentError(path + ": weight_map is empty");
  if (auto md = j.find("metadata"); md != j.end() && md->is_object()) {
    if (auto ts = md->find("total_size"); ts != md->end()) {
      if (!ts->is_number_unsigned()) {
        return InvalidArgumentError(path + ": metadata.total_size must be a non-negative integer");
      }
      idx.total_size = ts->get<uint64_t>();
    }
  }
  return idx;
}

}  // namespace

uint64_t Weight::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir,
                                                       const Gemma3Config& config,
                                                       const CheckpointLimits& lim) {
  std::unique_ptr<Checkpoint> ck(new Checkpoint());
  ASSIGN_OR_RETURN(std::string dir_real, RealPath(model_dir));
  if (!fs::is_directory(dir_real)) return InvalidArgumentError(model_dir + ": not a directory");

  // 1. Which files, and (when sharded) which tensor the index puts in which file.
  const std::string index_path = (fs::path(dir_real) / "model.safetensors.index.json").string();
  const std::string single_path = (fs::path(dir_real) / "model.safetensors").string();
  std::optional<IndexFile> index;
  std::vector<std::string> shard_names;
  if (fs::exists(fs::symlink_status(index_path))) {
    ASSIGN_OR_RETURN(std::string resolved, ResolveInside(dir_real, "model.safetensors.index.json",
                                                         "the model directory"));
    ASSIGN_OR_RETURN(IndexFile idx, ReadIndex(resolved, lim));
    std::set<std::string> names;
    for (const auto& [tensor, shard] : idx.weight_map) names.insert(shard);
    if (names.size() > lim.max_shards) {
      return InvalidArgumentError(index_path + ": " + std::to_string(names.size()) +
                                  " shards, over the limit of " + std::to_string(lim.max_shards));
    }
    shard_names.assign(names.begin(), names.end());
    index = std::move(idx);
  } else if (fs::exists(fs::symlink_status(single_path))) {
    shard_names = {"model.safetensors"};
  } else {
    return NotFoundError(model_dir + ": no model.safetensors or model.safetensors.index.json");
  }

  // 2. Map and validate every shard's header; connect file names to internal names.
  const bool text_only = !config.has_vision;
  std::map<std::string, std::pair<const TensorEntry*, size_t>> found;  // internal → (entry, shard)
  std::map<std::string, std::string> found_as;                         // internal → file name
  std::set<std::string> prefixes;
  uint64_t total_bytes = 0;
  std::vector<std::string> unknown;
  // Every shard path is resolved (exists, stays inside the directory) before any is opened.
  std::vector<std::string> shard_paths;
  for (const std::string& shard : shard_names) {
    const std::string listed_by = index ? index_path : std::string("the model directory");
    ASSIGN_OR_RETURN(std::string path, ResolveInside(dir_real, shard, listed_by));
    shard_paths.push_back(std::move(path));
  }
  for (size_t s = 0; s < shard_names.size(); ++s) {
    const std::string& shard = shard_names[s];
    const std::string& path = shard_paths[s];
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path, lim.safetensors));
    ck->files_.push_back(path);
    const size_t shard_i = ck->shards_.size();
    for (const TensorEntry& t : file->header().tensors) {
      if (index) {
        auto it = index->weight_map.find(t.name);
        if (it == index->weight_map.end()) {
          return InvalidArgumentError(path + ": tensor \"" + t.name + "\" is not listed in " +
                                      index_path);
        }
        if (it->second != shard) {
          return InvalidArgumentError(index_path + " places tensor \"" + t.name + "\" in " +
                                      it->second + ", but it is in " + shard);
        }
      }
      total_bytes += t.nbytes();
      std::string_view prefix;
      auto internal = InternalWeightName(t.name, text_only, &prefix);
      if (!internal) {
        unknown.push_back(t.name + " (in " + path + ")");
        continue;
      }
      prefixes.insert(std::string(prefix));
      auto [pos, inserted] = found.emplace(*internal, std::make_pair(&t, shard_i));
      if (!inserted) {
        return InvalidArgumentError(path + ": tensors \"" + found_as[*internal] + "\" and \"" +
                                    t.name + "\" are both " + *internal +
                                    " (two naming conventions mixed)");
      }
      found_as[*internal] = t.name;
    }
    ck->shards_.push_back(std::move(file));
  }
  if (index) {
    // Every tensor the index lists must be in the shard it names.
    for (const auto& entry : index->weight_map) {
      const std::string& tensor = entry.first;  // (clang 14 cannot capture structured bindings)
      const std::string& shard = entry.second;
      const auto it = std::find(shard_names.begin(), shard_names.end(), shard);
      const auto& tensors =
          ck->shards_[static_cast<size_t>(it - shard_names.begin())]->header().tensors;
      const bool present = std::any_of(tensors.begin(), tensors.end(),
                                       [&](const TensorEntry& t) { return t.name == tensor; });
      if (!present) {
        return InvalidArgumentError(index_path + " lists tensor \"" + tensor + "\" in " + shard +
                                    ", which has no such tensor");
      }
    }
    if (index->total_size && *index->total_size != total_bytes) {
      return InvalidArgumentError(index_path + ": metadata.total_size is " +
                                  std::to_string(*index->total_size) + " but the shards hold " +
                                  std::to_string(total_bytes) + " bytes of tensors");
    }
  }
  if (!unknown.empty()) {
    return InvalidArgumentError(
        "tensor " + unknown.front() + " belongs to no known Gemma 3 " +
        (text_only ? "text-only" : "multimodal") + " naming convention" +
        (unknown.size() > 1 ? " (and " + std::to_string(unknown.size() - 1) + " more)" : ""));
  }

  // 3. Presence and shape of every expected tensor; nothing unexpected.
  const std::vector<ExpectedTensor> expected = ExpectedTensors(config);
  std::set<std::string> expected_names;
  size_t missing = 0;
  std::string first_missing;
  for (const ExpectedTensor& e : expected) {
    expected_names.insert(e.name);
    auto it = found.find(e.name);
    if (it == found.end()) {
      if (missing++ == 0) first_missing = e.name;
      continue;
    }
    const TensorEntry& t = *it->second.first;
    const SafetensorsFile& file = *ck->shards_[it->second.second];
    if (t.shape != e.shape) {
      return InvalidArgumentError(file.path() + ": tensor \"" + t.name + "\" has shape " +
                                  ShapeString(t.shape) + ", but the config implies " +
                                  ShapeString(e.shape));
    }
    Weight w;
    w.name = e.name;
    w.file_name = t.name;
    w.file = &ck->files_[it->second.second];
    w.dtype = t.dtype;
    w.shape = t.shape;
    w.component = e.component;
    w.data = file.Data(t);
    ck->index_[w.name] = ck->weights_.size();
    ck->weights_.push_back(std::move(w));
  }
  if (missing > 0) {
    return InvalidArgumentError(model_dir + ": " + std::to_string(missing) +
                                " tensor(s) the config requires are missing, first: " +
                                FileNameHint(first_missing, text_only));
  }
  for (const auto& [name, where] : found) {
    if (expected_names.count(name)) continue;
    const TensorEntry& t = *where.first;
    const SafetensorsFile& file = *ck->shards_[where.second];
    if (name == "lm_head.weight" && config.text.tie_word_embeddings) {
      // A tied head stored anyway: it must be the embedding, or the config's tying is a lie.
      const Weight* emb = ck->Find("lm.embed_tokens.weight");
      const auto bytes = file.Data(t);
      if (t.shape != emb->shape || t.dtype != emb->dtype || bytes.size() != emb->data.size() ||
          std::memcmp(bytes.data(), emb->data.data(), bytes.size()) != 0) {
        return InvalidArgumentError(file.path() + ": tensor \"" + t.name +
                                    "\" differs from the embedding, but the config ties them "
                                    "(tie_word_embeddings is true)");
      }
      continue;
    }
    return InvalidArgumentError(file.path() + ": unexpected tensor \"" + t.name +
                                "\" (the config implies no " + name + ")");
  }

  for (const std::string& p : prefixes) ck->naming_ += (ck->naming_.empty() ? "" : ", ") + p + "*";
  ck->total_bytes_ = total_bytes;
  return ck;
}

const Weight* Checkpoint::Find(const std::string& internal_name) const {
  auto it = index_.find(internal_name);
  return it == index_.end() ? nullptr : &weights_[it->second];
}

ParameterCounts Checkpoint::CountStoredParameters() const {
  ParameterCounts c;
  for (const Weight& w : weights_) {
    const uint64_t n = w.numel();
    switch (w.component) {
      case Component::kVisionTower:
        c.vision_tower += n;
        break;
      case Component::kProjector:
        c.projector += n;
        break;
      case Component::kLanguageModel:
        c.language_model += n;
        break;
      case Component::kLmHead:
        c.lm_head += n;
        break;
    }
    if (w.name == "lm.embed_tokens.weight") c.embedding = n;
    c.total += n;
  }
  return c;
}

std::string Checkpoint::DTypeSummary() const {
  std::map<std::string, size_t> counts;
  for (const Weight& w : weights_) ++counts[DTypeName(w.dtype)];
  if (counts.size() == 1) return counts.begin()->first;
  std::string s = "mixed:";
  for (const auto& [name, n] : counts) s += " " + name + " x " + std::to_string(n);
  return s;
}

Status Checkpoint::ReplaceWithFloat(const std::string& internal_name, std::vector<float> values,
                                    DType store) {
  auto it = index_.find(internal_name);
  if (it == index_.end())
    return InternalError("checkpoint has no " + internal_name + " to replace");
  Weight& w = weights_[it->second];
  if (values.size() != w.numel()) {
    return InternalError("replacing " + internal_name + ": " + std::to_string(values.size()) +
                         " values for " + std::to_string(w.numel()) + " elements");
  }
  if (store == DType::kF16) return InternalError("replacing " + internal_name + ": F16 storage");
  auto bytes = std::make_unique<std::vector<uint8_t>>(values.size() * DTypeSize(store));
  if (store == DType::kF32) {
    std::memcpy(bytes->data(), values.data(), bytes->size());
  } else {
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t h = FloatToBf16Bits(values[i]);  // round to nearest even, once
      std::memcpy(bytes->data() + 2 * i, &h, 2);
    }
  }
  owned_.push_back(std::move(bytes));
  w.dtype = store;
  w.data = {owned_.back()->data(), owned_.back()->size()};
  return Status::Ok();
}

}  // namespace vlmserve
