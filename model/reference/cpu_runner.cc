// CPU reference runner (see cpu_runner.h).
#include "model/reference/cpu_runner.h"

#include <algorithm>

#include "kernels/kv_layout.h"
#include "model/weights/model_stats.h"

namespace vlmserve {

StatusOr<std::unique_ptr<CpuModelRunner>> CpuModelRunner::Create(const Checkpoint& ck,
                                                                 const Gemma3Config& config,
                                                                 const CpuRunnerOptions& options) {
  ASSIGN_OR_RETURN(Gemma3Decoder decoder, Gemma3Decoder::Load(ck, config));
  std::unique_ptr<CpuModelRunner> r(new CpuModelRunner(config, std::move(decoder)));
  if (config.has_vision) {
    ASSIGN_OR_RETURN(SiglipVisionTower tower, SiglipVisionTower::Load(ck, config));
    ASSIGN_OR_RETURN(MultiModalProjector projector, MultiModalProjector::Load(ck, config));
    r->tower_ = std::move(tower);
    r->projector_ = std::move(projector);
  }
  const Gemma3TextConfig& t = config.text;
  const uint64_t page_bytes = KvPageBytes(t, sizeof(float));
  KvCachePlan plan;
  if (options.kv_pages > 0) {
    plan.pages = options.kv_pages;
    plan.how = std::to_string(options.kv_pages) + " pages (set by the caller)";
  } else {
    ASSIGN_OR_RETURN(plan, PlanKvCache(options.kv, page_bytes, KvMinTokens(config), 16384,
                                       t.max_position_embeddings, nullptr));
  }
  const int64_t pages = plan.pages;
  if (pages > (int64_t{1} << 30)) return InvalidArgumentError("kv_pages is too large");
  r->memory_.kv_cache_bytes = static_cast<uint64_t>(pages) * page_bytes;
  r->memory_.kv_sizing = plan.how;
  if (auto n = CountParameters(config); n.ok()) r->memory_.weights_bytes = n->total * sizeof(float);
  r->has_full_ = t.NumLayersOfType(LayerType::kFullAttention) > 0;
  r->has_sliding_ = t.NumLayersOfType(LayerType::kSlidingAttention) > 0;
  r->pools_ = {r->has_full_ ? pages : 0, r->has_sliding_ ? pages : 0};
  // Uninitialised (new float[]), so untouched pages take no resident memory.
  const size_t per_pool =
      static_cast<size_t>(pages * kv::kPageTokens * t.num_key_value_heads * t.head_dim);
  for (int64_t l = 0; l < t.num_hidden_layers; ++l) {
    r->k_.emplace_back(new float[per_pool]);
    r->v_.emplace_back(new float[per_pool]);
    r->k_ptrs_.push_back(r->k_.back().get());
    r->v_ptrs_.push_back(r->v_.back().get());
  }
  return r;
}

StatusOr<ImageHandle> CpuModelRunner::EncodeImages(std::span<const float> pixel_values, int64_t n) {
  if (!tower_) return InvalidArgumentError("this model has no vision tower (text-only)");
  if (n < 1) return InvalidArgumentError("EncodeImages needs at least one image");
  ASSIGN_OR_RETURN(std::vector<float> vision, tower_->Forward(pixel_values, n));
  ASSIGN_OR_RETURN(std::vector<float> soft, projector_->Forward(vision, n));
  const ImageHandle h = next_handle_++;
  images_[h] = {n, std::move(soft)};
  return h;
}

StatusOr<std::vector<float>> CpuModelRunner::ReadImages(ImageHandle handle) const {
  auto it = images_.find(handle);
  if (it == images_.end()) return NotFoundError("no live image batch " + std::to_string(handle));
  return it->second.soft;
}

Status CpuModelRunner::Validate(const StepRow& row) const {
  RETURN_IF_ERROR(ValidateStepRow(row, config_, pools_, has_full_, has_sliding_));
  for (const ImageRef& ref : row.images) {
    auto it = images_.find(ref.handle);
    RETURN_IF_ERROR(ValidateImageRef(row, ref, it == images_.end() ? -1 : it->second.n));
  }
  return Status::Ok();
}

StatusOr<std::vector<StepOutput>> CpuModelRunner::Step(std::span<const StepRow> rows) {
  // Validate the whole batch first: a bad row must not leave others half-written.
  for (const StepRow& row : rows) RETURN_IF_ERROR(Validate(row));
  if (rows.empty()) return std::vector<StepOutput>{};
  const int64_t D = decoder_.hidden_size(), vocab = decoder_.vocab_size();
  const size_t per_image = static_cast<size_t>(config_.mm_tokens_per_image * D);

  // Every row's input embeddings one after the other; soft tokens replace the image positions,
  // one image per run, in order (spec §3.6; not scaled).
  std::vector<std::vector<uint8_t>> text_types(rows.size());
  std::vector<Gemma3Decoder::Chunk> chunks;
  std::vector<float> emb;
  std::unique_ptr<bool[]> all(new bool[rows.size()]);
  for (size_t r = 0; r < rows.size(); ++r) {
    const StepRow& row = rows[r];
    const size_t n = row.tokens.size();
    if (row.token_types.empty()) text_types[r].assign(n, 0);
    const std::span<const uint8_t> types =
        row.token_types.empty() ? std::span<const uint8_t>(text_types[r]) : row.token_types;
    const size_t base = emb.size();
    emb.resize(base + n * static_cast<size_t>(D));
    decoder_.Embed(row.tokens, types, emb.data() + base);
    size_t run = 0;
    for (size_t i = 0; i < n; ++i) {
      if (types[i] != 1) continue;
      const ImageRef& ref = row.images[run++];
      const float* src =
          images_.at(ref.handle).soft.data() + static_cast<size_t>(ref.index) * per_image;
      std::copy_n(src, per_image, emb.data() + base + i * static_cast<size_t>(D));
      i += static_cast<size_t>(config_.mm_tokens_per_image) - 1;
    }
    chunks.push_back({row.start, types, row.full_table, row.sliding_table});
    all[r] = row.logits == LogitsMode::kAll;
  }
  std::vector<std::vector<float>> logits = decoder_.ForwardBatch(
      {k_ptrs_, v_ptrs_}, chunks, emb, std::span<const bool>(all.get(), rows.size()));

  std::vector<StepOutput> out(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    const StepRow& row = rows[r];
    StepOutput& o = out[r];
    if (row.sample) {
      const std::span<const float> last(logits[r].data() + logits[r].size() - vocab,
                                        static_cast<size_t>(vocab));
      ASSIGN_OR_RETURN(SampleResult s,
                       SampleRef(last, row.sampling, row.draw, row.allowed, row.top_logprobs));
      o.token = s.token;
      o.logprob = s.logprob;
      o.top_logprobs = std::move(s.top_logprobs);
    }
    if (row.logits != LogitsMode::kNone) o.logits = std::move(logits[r]);  // [1 or n, vocab]
  }
  return out;
}

}  // namespace vlmserve
