// CUDA runner (see cuda_runner.h). Shapes: vision N = n·P patch rows of width d; decoder T = all
// rows' new tokens of width D, q [T, H·hd], k/v [T, KV·hd], MLP [T, 2I] → [T, I].
#include "model/cuda/cuda_runner.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>

#include "kernels/cpu/bf16.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/sample.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/avg_pool.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/geglu.h"
#include "kernels/cuda/gelu.h"
#include "kernels/cuda/kv_write.h"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/patch_embed.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sample.h"
#include "kernels/kv_layout.h"
#include "model/weights/tensor_names.h"
#include "model/weights/weight_convert.h"

namespace vlmserve {
namespace {

using bf16 = __nv_bfloat16;
constexpr size_t kAlign = 256;  // every buffer 256-byte aligned (cuBLASLt's preferred alignment)

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// A checkpoint tensor as bf16 bits (bf16 copied, f16/f32 rounded to nearest even once).
std::vector<uint16_t> Bf16Bits(const Weight& w) {
  std::vector<uint16_t> out(w.numel());
  if (w.dtype == DType::kBF16) {
    std::memcpy(out.data(), w.data.data(), out.size() * 2);
    return out;
  }
  const std::vector<float> f = WeightToFloat(w);
  for (size_t i = 0; i < f.size(); ++i) out[i] = FloatToBf16Bits(f[i]);
  return out;
}

// Buffers carved out of one allocation: offsets first, then pointers once it is reserved.
class Carver {
 public:
  size_t Add(size_t bytes) {
    const size_t at = total_;
    total_ += AlignUp(std::max<size_t>(bytes, 1));
    return at;
  }
  size_t total() const { return total_; }

 private:
  size_t total_ = 0;
};

// Host → device copies through two pinned stages (see Upload), with progress reports about every
// 10 % of `total` bytes and at the end.
class StagedUpload {
 public:
  static constexpr size_t kStage = size_t{32} << 20;
  StagedUpload(cudaStream_t stream, std::function<void(uint64_t, uint64_t)> progress,
               uint64_t total)
      : stream_(stream), progress_(std::move(progress)), total_(total) {
    for (int i = 0; i < 2; ++i) {
      pinned_ = pinned_ && stage_[i].Reserve(kStage).ok() &&
                cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming) == cudaSuccess;
    }
    cudaGetLastError();
  }
  ~StagedUpload() {
    for (cudaEvent_t e : done_) {
      if (e) cudaEventDestroy(e);
    }
  }
  StagedUpload(const StagedUpload&) = delete;
  StagedUpload& operator=(const StagedUpload&) = delete;

  Status Copy(uint8_t* dst, const void* src, size_t bytes) {
    const auto* from = static_cast<const uint8_t*>(src);
    for (size_t at = 0; at < bytes; at += kStage) {
      const size_t n = std::min(kStage, bytes - at);
      if (!pinned_) {
        CUDA_CHECK(cudaMemcpy(dst + at, from + at, n, cudaMemcpyHostToDevice));
        continue;
      }
      const int s = next_++ & 1;
      CUDA_CHECK(cudaEventSynchronize(done_[s]));  // this stage's previous copy has finished
      std::memcpy(stage_[s].data(), from + at, n);
      CUDA_CHECK(cudaMemcpyAsync(dst + at, stage_[s].data(), n, cudaMemcpyHostToDevice, stream_));
      CUDA_CHECK(cudaEventRecord(done_[s], stream_));
    }
    done_bytes_ += bytes;
    if (progress_ && total_ > 0 && done_bytes_ * 10 / total_ > reported_tenths_ &&
        done_bytes_ < total_) {
      reported_tenths_ = done_bytes_ * 10 / total_;
      progress_(done_bytes_, total_);
    }
    return Status::Ok();
  }
  // Waits for the last copies; reports the end (the whole allocation: what is not copied is the
  // alignment padding between tensors).
  Status Finish() {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (progress_) progress_(total_, total_);
    return Status::Ok();
  }

 private:
  cudaStream_t stream_;
  std::function<void(uint64_t, uint64_t)> progress_;
  uint64_t total_, done_bytes_ = 0, reported_tenths_ = 0;
  PinnedMemory stage_[2];
  cudaEvent_t done_[2] = {nullptr, nullptr};
  bool pinned_ = true;
  uint64_t next_ = 0;
};

}  // namespace

template <MemoryKind K>
CudaMemory<K>::~CudaMemory() {
  if (!ptr_) return;
  if constexpr (K == MemoryKind::kDevice) {
    cudaFree(ptr_);
  } else {
    cudaFreeHost(ptr_);
  }
}

template <MemoryKind K>
Status CudaMemory<K>::Reserve(size_t bytes) {
  constexpr bool kDevice = K == MemoryKind::kDevice;
  if (bytes <= bytes_) return Status::Ok();
  if (ptr_) {
    CUDA_CHECK(kDevice ? cudaFree(ptr_) : cudaFreeHost(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
  }
  const cudaError_t err = kDevice ? cudaMalloc(&ptr_, bytes) : cudaMallocHost(&ptr_, bytes);
  if (err != cudaSuccess) {
    ptr_ = nullptr;
    cudaGetLastError();  // an allocation failure is not sticky: clear it
    return ResourceExhaustedError(
        std::string("cannot allocate ") + std::to_string(bytes >> 20) +
        (kDevice ? " MiB of GPU memory: " : " MiB of pinned host memory: ") +
        cudaGetErrorString(err));
  }
  bytes_ = bytes;
  return Status::Ok();
}

template class CudaMemory<MemoryKind::kDevice>;
template class CudaMemory<MemoryKind::kPinnedHost>;

CudaEvent::~CudaEvent() {
  if (ev_) cudaEventDestroy(ev_);
}

Status CudaEvent::Create(bool timing) {
  if (ev_) return Status::Ok();
  CUDA_CHECK(cudaEventCreateWithFlags(&ev_, timing ? cudaEventDefault : cudaEventDisableTiming));
  return Status::Ok();
}

Status CudaModelRunner::Health() const {
  cudaSetDevice(device_);
  for (cudaStream_t s : {stream_, vision_stream_}) {
    if (!s) continue;
    const cudaError_t err = cudaStreamQuery(s);
    if (err == cudaSuccess || err == cudaErrorNotReady) continue;
    return InternalError(std::string("the GPU is unusable: ") + cudaGetErrorName(err) + " (" +
                         cudaGetErrorString(err) + ")");
  }
  return Status::Ok();
}

CudaModelRunner::~CudaModelRunner() {
  for (cudaStream_t s : {stream_, vision_stream_}) {
    if (!s) continue;
    cudaStreamSynchronize(s);  // nothing queued may outlive the memory it uses
    cudaStreamDestroy(s);
  }
}

StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Create(
    const Checkpoint& ck, const Gemma3Config& config, const CudaRunnerOptions& options) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return UnavailableError("--device cuda: no CUDA device is visible (driver and GPU needed)");
  }
  if (options.device < 0 || options.device >= count) {
    return InvalidArgumentError("CUDA device " + std::to_string(options.device) + " of " +
                                std::to_string(count));
  }
  std::unique_ptr<CudaModelRunner> r(new CudaModelRunner(config));
  r->device_ = options.device;
  CUDA_CHECK(cudaSetDevice(r->device_));
  CUDA_CHECK(cudaStreamCreateWithFlags(&r->stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaStreamCreateWithFlags(&r->vision_stream_, cudaStreamNonBlocking));
  ASSIGN_OR_RETURN(r->gemm_, CublasLtGemm::Create());
  if (config.has_vision) {
    ASSIGN_OR_RETURN(r->vision_gemm_, CublasLtGemm::Create());
    RETURN_IF_ERROR(r->pixels_copied_.Create(/*timing=*/false));
  }
  RETURN_IF_ERROR(r->Upload(ck, options));

  // KV pools: per layer K and V of its kind's page count.
  const Gemma3TextConfig& t = config.text;
  const uint64_t page_bytes = KvPageBytes(t, 2);
  KvCachePlan plan;
  if (options.kv_pages > 0) {
    plan.pages = options.kv_pages;
    plan.how = std::to_string(options.kv_pages) + " pages (set by the caller)";
  } else {
    KvDeviceMemory mem;
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));  // with the weights already uploaded
    mem.free = free_bytes;
    mem.total = total_bytes;
    mem.reserve = options.reserve_bytes;
    ASSIGN_OR_RETURN(plan, PlanKvCache(options.kv, page_bytes, KvMinTokens(config), 16384,
                                       t.max_position_embeddings, &mem));
  }
  const int64_t pages = plan.pages;
  if (pages > (int64_t{1} << 30)) return InvalidArgumentError("kv_pages is too large");
  r->memory_.weights_bytes = r->weights_.bytes();
  r->memory_.kv_cache_bytes = static_cast<uint64_t>(pages) * page_bytes;
  r->memory_.kv_sizing = plan.how;
  r->has_full_ = t.NumLayersOfType(LayerType::kFullAttention) > 0;
  r->has_sliding_ = t.NumLayersOfType(LayerType::kSlidingAttention) > 0;
  r->pools_ = {r->has_full_ ? pages : 0, r->has_sliding_ ? pages : 0};
  const size_t pool_bytes =
      static_cast<size_t>(pages * kv::kPageTokens * t.num_key_value_heads * t.head_dim) * 2;
  Carver kv;
  std::vector<std::pair<size_t, size_t>> at;
  for (size_t l = 0; l < r->layers_.size(); ++l)
    at.emplace_back(kv.Add(pool_bytes), kv.Add(pool_bytes));
  RETURN_IF_ERROR(r->kv_.Reserve(kv.total()).WithPrefix("the KV cache (--kv-cache-tokens)"));
  for (size_t l = 0; l < r->layers_.size(); ++l) {
    r->layers_[l].k_pool = reinterpret_cast<bf16*>(r->kv_.data() + at[l].first);
    r->layers_[l].v_pool = reinterpret_cast<bf16*>(r->kv_.data() + at[l].second);
  }
  CUDA_CHECK(cudaStreamSynchronize(r->stream_));
  return r;
}

// Every weight the runner reads, uploaded into one allocation.
Status CudaModelRunner::Upload(const Checkpoint& ck, const CudaRunnerOptions& options) {
  namespace tn = tensor_names;
  struct Item {
    size_t offset = 0;
    std::function<StatusOr<std::vector<uint16_t>>()> make;  // the tensor as bf16 bits
    const bf16** out = nullptr;
  };
  std::vector<Item> items;
  Carver carve;
  auto find = [&ck](const std::string& name) -> StatusOr<const Weight*> {
    const Weight* w = ck.Find(name);
    if (!w) return InternalError("checkpoint has no " + name + " although it was validated");
    return w;
  };
  // One tensor as stored.
  auto add = [&](const std::string& name, const bf16** out) -> Status {
    ASSIGN_OR_RETURN(const Weight* w, find(name));
    items.push_back({carve.Add(w->numel() * 2),
                     [w]() -> StatusOr<std::vector<uint16_t>> { return Bf16Bits(*w); }, out});
    return Status::Ok();
  };
  // Several [rows_i, cols] tensors stacked along rows (gate | up: one GEMM, GeGLU's layout).
  auto add_stacked = [&](const std::vector<std::string>& names, const bf16** out) -> Status {
    std::vector<const Weight*> ws;
    uint64_t n = 0;
    for (const std::string& name : names) {
      ASSIGN_OR_RETURN(const Weight* w, find(name));
      ws.push_back(w);
      n += w->numel();
    }
    items.push_back({carve.Add(n * 2),
                     [ws]() -> StatusOr<std::vector<uint16_t>> {
                       std::vector<uint16_t> all;
                       for (const Weight* w : ws) {
                         const std::vector<uint16_t> b = Bf16Bits(*w);
                         all.insert(all.end(), b.begin(), b.end());
                       }
                       return all;
                     },
                     out});
    return Status::Ok();
  };
  const Gemma3TextConfig& t = config_.text;
  RETURN_IF_ERROR(add(tn::kEmbedTokens, &embed_));
  RETURN_IF_ERROR(add(tn::kFinalNorm, &final_norm_));
  if (!t.tie_word_embeddings) RETURN_IF_ERROR(add(tn::kLmHead, &lm_head_));
  layers_.resize(static_cast<size_t>(t.num_hidden_layers));
  for (int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const tn::DecoderLayer n = tn::DecoderLayerTensors(l);
    DecoderLayer& L = layers_[static_cast<size_t>(l)];
    L.sliding = t.layer_types[static_cast<size_t>(l)] == LayerType::kSlidingAttention;
    RETURN_IF_ERROR(add(n.input_norm, &L.input_norm));
    RETURN_IF_ERROR(add(n.q_proj, &L.q));
    RETURN_IF_ERROR(add(n.k_proj, &L.k));
    RETURN_IF_ERROR(add(n.v_proj, &L.v));
    RETURN_IF_ERROR(add(n.o_proj, &L.o));
    if (t.attention_bias) {
      RETURN_IF_ERROR(add(n.q_bias, &L.q_b));
      RETURN_IF_ERROR(add(n.k_bias, &L.k_b));
      RETURN_IF_ERROR(add(n.v_bias, &L.v_b));
      RETURN_IF_ERROR(add(n.o_bias, &L.o_b));
    }
    RETURN_IF_ERROR(add(n.q_norm, &L.q_norm));
    RETURN_IF_ERROR(add(n.k_norm, &L.k_norm));
    RETURN_IF_ERROR(add(n.post_attn_norm, &L.post_attn));
    RETURN_IF_ERROR(add(n.pre_ff_norm, &L.pre_ff));
    RETURN_IF_ERROR(add_stacked({n.gate_proj, n.up_proj}, &L.gate_up));
    RETURN_IF_ERROR(add(n.down_proj, &L.down));
    RETURN_IF_ERROR(add(n.post_ff_norm, &L.post_ff));
  }
  if (config_.has_vision) {
    const SiglipVisionConfig& v = config_.vision;
    RETURN_IF_ERROR(add(tn::kPatchEmbedWeight, &patch_w_));
    RETURN_IF_ERROR(add(tn::kPatchEmbedBias, &patch_b_));
    RETURN_IF_ERROR(add(tn::kPositionEmbedding, &pos_emb_));
    vision_.resize(static_cast<size_t>(v.num_hidden_layers));
    for (int64_t l = 0; l < v.num_hidden_layers; ++l) {
      const tn::VisionLayer n = tn::VisionLayerTensors(l);
      VisionLayer& L = vision_[static_cast<size_t>(l)];
      for (auto [name, out] : std::initializer_list<std::pair<const std::string*, const bf16**>>{
               {&n.ln1_weight, &L.ln1_w},
               {&n.ln1_bias, &L.ln1_b},
               {&n.q_weight, &L.q_w},
               {&n.q_bias, &L.q_b},
               {&n.k_weight, &L.k_w},
               {&n.k_bias, &L.k_b},
               {&n.v_weight, &L.v_w},
               {&n.v_bias, &L.v_b},
               {&n.out_weight, &L.o_w},
               {&n.out_bias, &L.o_b},
               {&n.ln2_weight, &L.ln2_w},
               {&n.ln2_bias, &L.ln2_b},
               {&n.fc1_weight, &L.fc1_w},
               {&n.fc1_bias, &L.fc1_b},
               {&n.fc2_weight, &L.fc2_w},
               {&n.fc2_bias, &L.fc2_b}}) {
        RETURN_IF_ERROR(add(*name, out));
      }
    }
    RETURN_IF_ERROR(add(tn::kPostLayerNormWeight, &post_ln_w_));
    RETURN_IF_ERROR(add(tn::kPostLayerNormBias, &post_ln_b_));
    RETURN_IF_ERROR(add(tn::kProjectorNorm, &soft_norm_));
    // The projector's raw parameter is input-major [d, D] (y = x · W, spec §5); the GEMM takes
    // nn.Linear's [out, in], so it is stored transposed: [D, d].
    ASSIGN_OR_RETURN(const Weight* proj, find(tn::kProjectorWeight));
    const int64_t d = proj->shape[0], D = proj->shape[1];
    items.push_back({carve.Add(proj->numel() * 2),
                     [proj, d, D]() -> StatusOr<std::vector<uint16_t>> {
                       const std::vector<uint16_t> b = Bf16Bits(*proj);
                       std::vector<uint16_t> tr(b.size());
                       for (int64_t i = 0; i < d; ++i) {
                         for (int64_t j = 0; j < D; ++j) tr[j * d + i] = b[i * D + j];
                       }
                       return tr;
                     },
                     &proj_});
  }
  // RoPE frequencies (fp32) at the end of the same allocation.
  const RopeParams& rf = t.rope_full;
  const RopeParams& rs = t.rope_sliding;
  const std::vector<float> inv_full =
      RopeInvFreq(t.head_dim, rf.theta, rf.type == RopeType::kLinear ? rf.factor : 1.0);
  const std::vector<float> inv_sliding =
      RopeInvFreq(t.head_dim, rs.theta, rs.type == RopeType::kLinear ? rs.factor : 1.0);
  const size_t inv_full_at = carve.Add(inv_full.size() * 4);
  const size_t inv_sliding_at = carve.Add(inv_sliding.size() * 4);

  RETURN_IF_ERROR(weights_.Reserve(carve.total()).WithPrefix("the model's weights"));
  // mmap'd checkpoint → bf16 bits (host) → two pinned 32 MiB stages → device: while one stage's
  // copy runs, the host fills the other and converts the next tensor. Where the system refuses to
  // lock memory, plain synchronous copies.
  StagedUpload up(stream_, options.on_load_progress, carve.total());
  for (Item& item : items) {
    ASSIGN_OR_RETURN(std::vector<uint16_t> bits, item.make());
    RETURN_IF_ERROR(up.Copy(weights_.data() + item.offset, bits.data(), bits.size() * 2));
    *item.out = reinterpret_cast<const bf16*>(weights_.data() + item.offset);
  }
  RETURN_IF_ERROR(up.Copy(weights_.data() + inv_full_at, inv_full.data(), inv_full.size() * 4));
  RETURN_IF_ERROR(
      up.Copy(weights_.data() + inv_sliding_at, inv_sliding.data(), inv_sliding.size() * 4));
  RETURN_IF_ERROR(up.Finish());
  inv_freq_full_ = reinterpret_cast<const float*>(weights_.data() + inv_full_at);
  inv_freq_sliding_ = reinterpret_cast<const float*>(weights_.data() + inv_sliding_at);
  return Status::Ok();
}

StatusOr<ImageHandle> CudaModelRunner::EncodeImages(std::span<const float> pixel_values,
                                                    int64_t n) {
  if (!config_.has_vision)
    return InvalidArgumentError("this model has no vision tower (text-only)");
  if (n < 1) return InvalidArgumentError("EncodeImages needs at least one image");
  const SiglipVisionConfig& v = config_.vision;
  const int64_t S = v.image_size, c = v.num_channels;
  if (static_cast<int64_t>(pixel_values.size()) != n * c * S * S) {
    return InvalidArgumentError("EncodeImages: " + std::to_string(pixel_values.size()) +
                                " pixel values for " + std::to_string(n) + " images of " +
                                std::to_string(c) + "x" + std::to_string(S) + "x" +
                                std::to_string(S));
  }
  CUDA_CHECK(cudaSetDevice(device_));
  ImageBatch batch;
  batch.n = n;
  RETURN_IF_ERROR(batch.start.Create(/*timing=*/true));
  RETURN_IF_ERROR(batch.done.Create(/*timing=*/true));
  RETURN_IF_ERROR(batch.soft.Reserve(
      static_cast<size_t>(n * config_.mm_tokens_per_image * config_.text.hidden_size) * 2));
  if (Status queued = EnqueueVision(pixel_values, n, batch); !queued.ok()) {
    cudaStreamSynchronize(vision_stream_);  // what was queued ends before `batch` is freed
    return queued;
  }
  const ImageHandle handle = next_handle_++;
  images_.emplace(handle, std::move(batch));
  return handle;
}

// The vision tower and projector for one batch, queued on vision_stream_ between the batch's two
// events; returns without waiting.
Status CudaModelRunner::EnqueueVision(std::span<const float> pixel_values, int64_t n,
                                      ImageBatch& batch) {
  const SiglipVisionConfig& v = config_.vision;
  const int64_t S = v.image_size, p = v.patch_size, c = v.num_channels, d = v.hidden_size;
  const int64_t P = v.num_patches(), I = v.intermediate_size, N = n * P;
  const int64_t heads = v.num_attention_heads, hd = v.head_dim();
  const int64_t mm = config_.mm_tokens_per_image, D = config_.text.hidden_size;
  cudaStream_t vs = vision_stream_;
  Carver cv;
  const size_t pix_at = cv.Add(pixel_values.size() * 4);
  const size_t patches_at = cv.Add(static_cast<size_t>(N * c * p * p) * 2);
  const size_t x_at = cv.Add(static_cast<size_t>(N * d) * 2);
  const size_t h_at = cv.Add(static_cast<size_t>(N * d) * 2);
  const size_t q_at = cv.Add(static_cast<size_t>(N * d) * 2);
  const size_t k_at = cv.Add(static_cast<size_t>(N * d) * 2);
  const size_t v_at = cv.Add(static_cast<size_t>(N * d) * 2);
  const size_t mid_at = cv.Add(static_cast<size_t>(N * I) * 2);
  const size_t pooled_at = cv.Add(static_cast<size_t>(n * mm * d) * 2);
  // The scratch is shared by batches in stream order; a queued batch may still read it, so wait
  // for the stream before it is reallocated.
  if (cv.total() > vision_scratch_.bytes()) CUDA_CHECK(cudaStreamSynchronize(vs));
  RETURN_IF_ERROR(vision_scratch_.Reserve(cv.total()));
  uint8_t* base = vision_scratch_.data();
  auto buf = [base](size_t at) { return reinterpret_cast<bf16*>(base + at); };
  float* pix = reinterpret_cast<float*>(base + pix_at);
  bf16 *x = buf(x_at), *h = buf(h_at), *q = buf(q_at), *k = buf(k_at), *vv = buf(v_at);
  bf16 *mid = buf(mid_at), *pooled = buf(pooled_at);
  CUDA_CHECK(cudaEventRecord(batch.start.get(), vs));
  // The pixels go up from pinned memory, so the copy is queued like the rest (from pageable
  // memory the driver first waits for the stream to drain). The stage is reused once the last
  // batch's copy has run; where the system refuses to lock memory, the pageable copy it is.
  const size_t pix_bytes = pixel_values.size() * 4;
  const void* src = pixel_values.data();
  CUDA_CHECK(cudaEventSynchronize(pixels_copied_.get()));
  if (vision_pinned_.Reserve(pix_bytes).ok()) {
    std::memcpy(vision_pinned_.data(), pixel_values.data(), pix_bytes);
    src = vision_pinned_.data();
  }
  CUDA_CHECK(cudaMemcpyAsync(pix, src, pix_bytes, cudaMemcpyHostToDevice, vs));
  CUDA_CHECK(cudaEventRecord(pixels_copied_.get(), vs));

  gpu::PatchEmbedArgs pe;
  pe.pixels = pix;
  pe.w = patch_w_;
  pe.bias = patch_b_;
  pe.pos = pos_emb_;
  pe.patches = buf(patches_at);
  pe.y = x;
  pe.n = n;
  pe.c = c;
  pe.s = S;
  pe.p = p;
  pe.d = d;
  RETURN_IF_ERROR(gpu::PatchEmbed(*vision_gemm_, pe, vs));
  const float eps = static_cast<float>(v.layer_norm_eps);
  auto linear = [&](const bf16* in, const bf16* w, const bf16* b, bf16* out, int64_t n_out,
                    int64_t k_in, const bf16* add) {
    return vision_gemm_->Run({in, w, out, N, n_out, k_in, b, add}, vs);
  };
  for (const VisionLayer& L : vision_) {
    RETURN_IF_ERROR(gpu::LayerNorm({x, L.ln1_w, L.ln1_b, h, N, d, eps}, vs));
    RETURN_IF_ERROR(linear(h, L.q_w, L.q_b, q, d, d, nullptr));
    RETURN_IF_ERROR(linear(h, L.k_w, L.k_b, k, d, d, nullptr));
    RETURN_IF_ERROR(linear(h, L.v_w, L.v_b, vv, d, d, nullptr));
    gpu::DenseAttentionArgs at;
    at.q = q;
    at.k = k;
    at.v = vv;
    at.o = h;
    at.images = n;
    at.n = P;
    at.heads = heads;
    at.hd = hd;
    at.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    RETURN_IF_ERROR(gpu::DenseAttention(at, vs));
    RETURN_IF_ERROR(linear(h, L.o_w, L.o_b, x, d, d, x));  // x += out_proj(attention)
    RETURN_IF_ERROR(gpu::LayerNorm({x, L.ln2_w, L.ln2_b, h, N, d, eps}, vs));
    RETURN_IF_ERROR(linear(h, L.fc1_w, L.fc1_b, mid, I, d, nullptr));
    RETURN_IF_ERROR(gpu::Gelu({mid, mid, N * I}, vs));
    RETURN_IF_ERROR(linear(mid, L.fc2_w, L.fc2_b, x, d, I, x));  // x += fc2(gelu(fc1(h)))
  }
  RETURN_IF_ERROR(gpu::LayerNorm({x, post_ln_w_, post_ln_b_, x, N, d, eps}, vs));

  // Projector (spec §5): average-pool the patch grid, RMSNorm with the vision eps, project to D.
  const int64_t side = v.patches_per_side(), kernel = config_.pool_kernel();
  RETURN_IF_ERROR(gpu::AvgPoolPatches({x, pooled, n, side, kernel, d}, vs));
  gpu::RmsNormArgs rn;
  rn.x = pooled;
  rn.y = pooled;
  rn.w = soft_norm_;
  rn.tokens = n * mm;
  rn.dim = d;
  rn.eps = eps;
  RETURN_IF_ERROR(gpu::RmsNorm(rn, vs));
  RETURN_IF_ERROR(vision_gemm_->Run(
      {pooled, proj_, reinterpret_cast<bf16*>(batch.soft.data()), n * mm, D, d, nullptr, nullptr},
      vs));
  CUDA_CHECK(cudaEventRecord(batch.done.get(), vs));
  return Status::Ok();
}

void CudaModelRunner::ReleaseImages(ImageHandle handle) {
  auto it = images_.find(handle);
  if (it == images_.end()) return;
  cudaEventSynchronize(it->second.done.get());  // an error here is the stream's: Health reports it
  images_.erase(it);
}

int64_t CudaModelRunner::ImagesDeviceMicros(ImageHandle handle) const {
  auto it = images_.find(handle);
  if (it == images_.end()) return -1;
  if (const cudaError_t q = cudaEventQuery(it->second.done.get()); q != cudaSuccess) {
    if (q == cudaErrorNotReady) cudaGetLastError();  // not an error to keep; others are Health's
    return -1;
  }
  float ms = 0.f;
  if (cudaEventElapsedTime(&ms, it->second.start.get(), it->second.done.get()) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return static_cast<int64_t>(ms * 1000.0f);
}

StatusOr<std::vector<float>> CudaModelRunner::ReadImages(ImageHandle handle) const {
  auto it = images_.find(handle);
  if (it == images_.end()) return NotFoundError("no live image batch " + std::to_string(handle));
  CUDA_CHECK(cudaEventSynchronize(it->second.done.get()));  // queued on the vision stream
  const size_t count =
      static_cast<size_t>(it->second.n * config_.mm_tokens_per_image * config_.text.hidden_size);
  std::vector<uint16_t> bits(count);
  CUDA_CHECK(cudaMemcpy(bits.data(), it->second.soft.data(), count * 2, cudaMemcpyDeviceToHost));
  std::vector<float> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = Bf16BitsToFloat(bits[i]);
  return out;
}

Status CudaModelRunner::Validate(const StepRow& row) const {
  RETURN_IF_ERROR(ValidateStepRow(row, config_, pools_, has_full_, has_sliding_));
  for (const ImageRef& ref : row.images) {
    auto it = images_.find(ref.handle);
    RETURN_IF_ERROR(ValidateImageRef(row, ref, it == images_.end() ? -1 : it->second.n));
  }
  return Status::Ok();
}

StatusOr<std::vector<StepOutput>> CudaModelRunner::Step(std::span<const StepRow> rows) {
  for (const StepRow& row : rows) RETURN_IF_ERROR(Validate(row));
  if (rows.empty()) return std::vector<StepOutput>{};
  CUDA_CHECK(cudaSetDevice(device_));
  // Image batches still queued on the vision stream: the decoder's stream waits for those this
  // step reads (on the device; the host goes on preparing the step).
  for (const StepRow& row : rows) {
    for (const ImageRef& ref : row.images) {
      CUDA_CHECK(cudaStreamWaitEvent(stream_, images_.at(ref.handle).done.get(), 0));
    }
  }
  const Gemma3TextConfig& t = config_.text;
  const int64_t D = t.hidden_size, H = t.num_attention_heads, KV = t.num_key_value_heads;
  const int64_t hd = t.head_dim, I = t.intermediate_size, V = t.vocab_size;
  const int64_t R = static_cast<int64_t>(rows.size());
  const int64_t mm = config_.mm_tokens_per_image;

  // ---- host side: ids, positions, image blocks, tables and KV slots of every row ----
  std::vector<int32_t> ids, positions, blocks, row_tokens{0}, row_start, slots_full, slots_sliding;
  std::vector<uint8_t> skip;
  int64_t stride_full = 1, stride_sliding = 1;
  bool any_image = false;
  for (const StepRow& row : rows) {
    stride_full = std::max<int64_t>(stride_full, static_cast<int64_t>(row.full_table.size()));
    stride_sliding =
        std::max<int64_t>(stride_sliding, static_cast<int64_t>(row.sliding_table.size()));
  }
  std::vector<int32_t> tables_full(static_cast<size_t>(R * stride_full), kv::kReleasedPage);
  std::vector<int32_t> tables_sliding(static_cast<size_t>(R * stride_sliding), kv::kReleasedPage);
  struct SoftCopy {
    int64_t token = 0;
    const uint8_t* src = nullptr;
  };
  std::vector<SoftCopy> soft;
  std::vector<int64_t> logit_rows;  // token indices whose logits are computed
  std::vector<int64_t> logit_count(static_cast<size_t>(R), 0);
  for (int64_t r = 0; r < R; ++r) {
    const StepRow& row = rows[static_cast<size_t>(r)];
    const int64_t n = static_cast<int64_t>(row.tokens.size());
    const int64_t first = static_cast<int64_t>(ids.size());
    row_start.push_back(static_cast<int32_t>(row.start));
    std::copy(row.full_table.begin(), row.full_table.end(), tables_full.begin() + r * stride_full);
    std::copy(row.sliding_table.begin(), row.sliding_table.end(),
              tables_sliding.begin() + r * stride_sliding);
    int32_t next_block = 0;
    size_t image = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool is_soft = !row.token_types.empty() && row.token_types[static_cast<size_t>(i)] == 1;
      const bool continues = is_soft && i > 0 && row.token_types[static_cast<size_t>(i - 1)] == 1;
      ids.push_back(row.tokens[static_cast<size_t>(i)]);
      skip.push_back(is_soft ? 1 : 0);
      const int64_t pos = row.start + i;
      positions.push_back(static_cast<int32_t>(pos));
      blocks.push_back(is_soft ? (continues ? next_block - 1 : next_block++) : -1);
      if (is_soft && !continues) {
        const ImageRef& ref = row.images[image++];
        const ImageBatch& b = images_.at(ref.handle);
        soft.push_back({first + i, b.soft.data() + static_cast<size_t>(ref.index * mm * D) * 2});
        any_image = true;
      }
      auto slot = [pos](std::span<const int32_t> table) {
        if (table.empty()) return int32_t{-1};
        const int32_t page = table[static_cast<size_t>(kv::LogicalPage(pos))];
        return page < 0 ? int32_t{-1}
                        : static_cast<int32_t>(page * kv::kPageTokens + kv::SlotInPage(pos));
      };
      slots_full.push_back(slot(row.full_table));
      slots_sliding.push_back(slot(row.sliding_table));
    }
    row_tokens.push_back(static_cast<int32_t>(ids.size()));
    if (row.sample || row.logits != LogitsMode::kNone) {
      const int64_t from = row.logits == LogitsMode::kAll ? first : first + n - 1;
      for (int64_t i = from; i < first + n; ++i) logit_rows.push_back(i);
      logit_count[static_cast<size_t>(r)] = first + n - from;
    }
  }
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t M = static_cast<int64_t>(logit_rows.size());

  // ---- where each row's sample is drawn (kernels/cuda/sample): greedy rows on the device (only
  // the token and its logprob come back); rows at a temperature ranked on the device (the best
  // kTopCandidates tokens and the row's sums come back, the host draws: SampleFromPrefix); the
  // rest — top_logprobs, rows that ask for logits — by SampleRef on the host from the row ----
  std::vector<int32_t> greedy_rows, greedy_mask_of;  // per device sample: logits row, mask or -1
  std::vector<int32_t> top_rows, top_mask_of;
  std::vector<float> top_temps;
  std::vector<uint32_t> greedy_masks;  // the masks of both kinds of device samples
  std::vector<int64_t> greedy_of(static_cast<size_t>(R), -1);  // step row → device sample
  std::vector<int64_t> top_of(static_cast<size_t>(R), -1);     // step row → ranked sample
  std::vector<int64_t> host_at(static_cast<size_t>(R), -1);    // step row → its host logits
  int64_t host_rows = 0;
  {
    int64_t at = 0;
    for (int64_t r = 0; r < R; ++r) {
      const StepRow& row = rows[static_cast<size_t>(r)];
      const int64_t count = logit_count[static_cast<size_t>(r)];
      const bool on_device = row.sample && row.top_logprobs == 0 && row.logits == LogitsMode::kNone;
      auto add_mask = [&](std::vector<int32_t>& mask_of) {
        if (row.allowed) {
          mask_of.push_back(static_cast<int32_t>(greedy_masks.size() / MaskWords(V)));
          greedy_masks.insert(greedy_masks.end(), row.allowed, row.allowed + MaskWords(V));
        } else {
          mask_of.push_back(-1);
        }
      };
      if (on_device && row.sampling.temperature == 0.0f) {
        greedy_of[static_cast<size_t>(r)] = static_cast<int64_t>(greedy_rows.size());
        greedy_rows.push_back(static_cast<int32_t>(at + count - 1));
        add_mask(greedy_mask_of);
      } else if (on_device) {
        top_of[static_cast<size_t>(r)] = static_cast<int64_t>(top_rows.size());
        top_rows.push_back(static_cast<int32_t>(at + count - 1));
        top_temps.push_back(row.sampling.temperature);
        add_mask(top_mask_of);
      } else if (count > 0) {
        host_at[static_cast<size_t>(r)] = host_rows;
        host_rows += count;
      }
      at += count;
    }
  }
  const int64_t G = static_cast<int64_t>(greedy_rows.size());
  const int64_t TS = static_cast<int64_t>(top_rows.size());
  constexpr int32_t kTopCandidates = gpu::kMaxTopCandidates;

  // ---- attention plans (kernels/attention_plan.h): one per layer kind, read by every layer of
  // that kind — flash-decoding for short rows with context splits, the head_dim-256 tensor-core
  // prefill for long ones. head_dim not a multiple of 8 (tiny test models): the generic kernel ----
  const bool planned = hd % 8 == 0;
  attn::AttentionPlan plan_full, plan_sliding;
  if (planned) {
    std::vector<attn::RowDesc> descs;
    for (int64_t r = 0; r < R; ++r) {
      descs.push_back({row_tokens[static_cast<size_t>(r)],
                       row_tokens[static_cast<size_t>(r + 1)] - row_tokens[static_cast<size_t>(r)],
                       row_start[static_cast<size_t>(r)]});
    }
    attn::PlanOptions po;
    po.hq = H;
    po.hkv = KV;
    po.window = t.sliding_window;
    po.tensor_core_prefill = gpu::PagedTensorCorePrefillSupported(hd);
    po.target_ctas = gpu::PagedDecodeTargetCtas();
    plan_full = attn::PlanPagedAttention(descs, any_image ? &blocks : nullptr, po);
    po.sliding = true;
    plan_sliding = attn::PlanPagedAttention(descs, any_image ? &blocks : nullptr, po);
  }

  // ---- device buffers: one scratch allocation, inputs uploaded with one copy ----
  Carver cv;
  const size_t x_at = cv.Add(static_cast<size_t>(T * D) * 2);
  const size_t a_at = cv.Add(static_cast<size_t>(T * D) * 2);
  const size_t tmp_at = cv.Add(static_cast<size_t>(T * D) * 2);
  const size_t q_at = cv.Add(static_cast<size_t>(T * H * hd) * 2);
  const size_t att_at = cv.Add(static_cast<size_t>(T * H * hd) * 2);
  const size_t k_at = cv.Add(static_cast<size_t>(T * KV * hd) * 2);
  const size_t v_at = cv.Add(static_cast<size_t>(T * KV * hd) * 2);
  const size_t gu_at = cv.Add(static_cast<size_t>(T * 2 * I) * 2);
  const size_t g_at = cv.Add(static_cast<size_t>(T * I) * 2);
  const size_t hin_at = cv.Add(static_cast<size_t>(std::max<int64_t>(M, 1) * D) * 2);
  const size_t h_at = cv.Add(static_cast<size_t>(std::max<int64_t>(M, 1) * D) * 2);
  const size_t logits_at = cv.Add(static_cast<size_t>(std::max<int64_t>(M, 1) * V) * 2);
  const size_t greedy_at = cv.Add(static_cast<size_t>(G) * sizeof(gpu::GreedyResult));
  const size_t top_sum_at = cv.Add(static_cast<size_t>(TS) * sizeof(gpu::TopSummary));
  const size_t top_ids_at = cv.Add(static_cast<size_t>(TS * kTopCandidates) * 4);
  const size_t top_values_at = cv.Add(static_cast<size_t>(TS * kTopCandidates) * 4);
  // One workspace for both plans' partials: the layers run one after another on one stream.
  const size_t ws_at = cv.Add(static_cast<size_t>(std::max(
      attn::PlanWorkspaceBytes(plan_full, H, hd), attn::PlanWorkspaceBytes(plan_sliding, H, hd))));
  // Inputs, in the order they are staged on the host.
  Carver in;
  const size_t ids_in = in.Add(ids.size() * 4), pos_in = in.Add(positions.size() * 4);
  const size_t blocks_in = in.Add(blocks.size() * 4), rt_in = in.Add(row_tokens.size() * 4);
  const size_t rs_in = in.Add(row_start.size() * 4), tf_in = in.Add(tables_full.size() * 4);
  const size_t ts_in = in.Add(tables_sliding.size() * 4), sf_in = in.Add(slots_full.size() * 4);
  const size_t ss_in = in.Add(slots_sliding.size() * 4), skip_in = in.Add(skip.size());
  const size_t grow_in = in.Add(greedy_rows.size() * 4);
  const size_t gmask_of_in = in.Add(greedy_mask_of.size() * 4);
  const size_t gmask_in = in.Add(greedy_masks.size() * 4);
  const size_t trow_in = in.Add(top_rows.size() * 4);
  const size_t tmask_of_in = in.Add(top_mask_of.size() * 4);
  const size_t ttemp_in = in.Add(top_temps.size() * 4);
  auto add_plan = [&in](const attn::AttentionPlan& p) {
    return std::array<size_t, 3>{in.Add(p.decode.size() * sizeof(attn::WorkItem)),
                                 in.Add(p.prefill.size() * sizeof(attn::WorkItem)),
                                 in.Add(p.merges.size() * sizeof(attn::MergeItem))};
  };
  const std::array<size_t, 3> pf_in = add_plan(plan_full), ps_in = add_plan(plan_sliding);
  const size_t inputs_at = cv.Add(in.total());
  RETURN_IF_ERROR(step_scratch_.Reserve(cv.total()));
  uint8_t* base = step_scratch_.data();
  auto buf = [base](size_t at) { return reinterpret_cast<bf16*>(base + at); };
  // Pinned staging: the copy of the previous step's inputs must be over before the buffer is
  // rewritten (a step that failed half-way may have left it queued; otherwise the stream is idle).
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  uint8_t* staging = nullptr;
  if (host_pinned_.Reserve(in.total()).ok()) {
    staging = host_pinned_.data();
  } else {
    host_pageable_.resize(in.total());
    staging = host_pageable_.data();
  }
  std::memset(staging, 0, in.total());
  auto stage = [staging](size_t at, const void* src, size_t bytes) {
    if (bytes) std::memcpy(staging + at, src, bytes);
  };
  stage(ids_in, ids.data(), ids.size() * 4);
  stage(pos_in, positions.data(), positions.size() * 4);
  stage(blocks_in, blocks.data(), blocks.size() * 4);
  stage(rt_in, row_tokens.data(), row_tokens.size() * 4);
  stage(rs_in, row_start.data(), row_start.size() * 4);
  stage(tf_in, tables_full.data(), tables_full.size() * 4);
  stage(ts_in, tables_sliding.data(), tables_sliding.size() * 4);
  stage(sf_in, slots_full.data(), slots_full.size() * 4);
  stage(ss_in, slots_sliding.data(), slots_sliding.size() * 4);
  stage(skip_in, skip.data(), skip.size());
  stage(grow_in, greedy_rows.data(), greedy_rows.size() * 4);
  stage(gmask_of_in, greedy_mask_of.data(), greedy_mask_of.size() * 4);
  stage(gmask_in, greedy_masks.data(), greedy_masks.size() * 4);
  stage(trow_in, top_rows.data(), top_rows.size() * 4);
  stage(tmask_of_in, top_mask_of.data(), top_mask_of.size() * 4);
  stage(ttemp_in, top_temps.data(), top_temps.size() * 4);
  auto stage_plan = [&stage](const attn::AttentionPlan& p, const std::array<size_t, 3>& at) {
    stage(at[0], p.decode.data(), p.decode.size() * sizeof(attn::WorkItem));
    stage(at[1], p.prefill.data(), p.prefill.size() * sizeof(attn::WorkItem));
    stage(at[2], p.merges.data(), p.merges.size() * sizeof(attn::MergeItem));
  };
  stage_plan(plan_full, pf_in);
  stage_plan(plan_sliding, ps_in);
  uint8_t* inputs = base + inputs_at;
  CUDA_CHECK(cudaMemcpyAsync(inputs, staging, in.total(), cudaMemcpyHostToDevice, stream_));
  auto dev_i32 = [inputs](size_t at) { return reinterpret_cast<const int32_t*>(inputs + at); };
  auto plan_view = [&](const attn::AttentionPlan& p, const std::array<size_t, 3>& at) {
    gpu::PagedAttentionPlanView v;
    v.decode = reinterpret_cast<const attn::WorkItem*>(inputs + at[0]);
    v.decode_items = static_cast<int64_t>(p.decode.size());
    v.prefill = reinterpret_cast<const attn::WorkItem*>(inputs + at[1]);
    v.prefill_items = static_cast<int64_t>(p.prefill.size());
    v.merges = reinterpret_cast<const attn::MergeItem*>(inputs + at[2]);
    v.merge_items = static_cast<int64_t>(p.merges.size());
    v.heads_per_cta = p.heads_per_cta;
    v.query_vectors = p.query_vectors;
    v.parts = p.parts;
    v.workspace = reinterpret_cast<float*>(base + ws_at);
    return v;
  };
  const gpu::PagedAttentionPlanView view_full = plan_view(plan_full, pf_in);
  const gpu::PagedAttentionPlanView view_sliding = plan_view(plan_sliding, ps_in);
  bf16 *x = buf(x_at), *a = buf(a_at), *tmp = buf(tmp_at), *q = buf(q_at), *att = buf(att_at);
  bf16 *k = buf(k_at), *v = buf(v_at), *gu = buf(gu_at), *g = buf(g_at);
  bf16 *h_in = buf(hin_at), *h = buf(h_at), *logits = buf(logits_at);

  // ---- embeddings: ids × bf16(√D) (transformers scales by embed_scale cast to bf16), then each
  // image's soft tokens over its run (not scaled, spec §3.6) ----
  gpu::EmbeddingArgs e;
  e.table = embed_;
  e.ids = dev_i32(ids_in);
  e.skip = inputs + skip_in;
  e.y = x;
  e.tokens = T;
  e.dim = D;
  e.vocab = V;
  e.scale = RoundToBf16(static_cast<float>(std::sqrt(static_cast<double>(D))));
  RETURN_IF_ERROR(gpu::Embedding(e, stream_));
  for (const SoftCopy& s : soft) {
    CUDA_CHECK(cudaMemcpyAsync(x + s.token * D, s.src, static_cast<size_t>(mm * D) * 2,
                               cudaMemcpyDeviceToDevice, stream_));
  }

  // ---- layers ----
  const float eps = static_cast<float>(t.rms_norm_eps);
  auto linear = [&](const bf16* in_, const bf16* w, const bf16* b, bf16* out, int64_t n_out,
                    int64_t k_in) {
    return gemm_->Run({in_, w, out, T, n_out, k_in, b, nullptr}, stream_);
  };
  auto rms = [&](const bf16* xin, bf16* y, const bf16* w, int64_t tokens, int64_t heads,
                 int64_t dim) {
    gpu::RmsNormArgs n;
    n.x = xin;
    n.y = y;
    n.w = w;
    n.tokens = tokens;
    n.heads = heads;
    n.dim = dim;
    n.eps = eps;
    return gpu::RmsNorm(n, stream_);
  };
  if (!layers_.empty()) RETURN_IF_ERROR(rms(x, a, layers_[0].input_norm, T, 1, D));
  for (size_t l = 0; l < layers_.size(); ++l) {
    const DecoderLayer& L = layers_[l];
    RETURN_IF_ERROR(linear(a, L.q, L.q_b, q, H * hd, D));
    RETURN_IF_ERROR(linear(a, L.k, L.k_b, k, KV * hd, D));
    RETURN_IF_ERROR(linear(a, L.v, L.v_b, v, KV * hd, D));
    RETURN_IF_ERROR(rms(q, q, L.q_norm, T, H, hd));  // per head, one [hd] weight
    RETURN_IF_ERROR(rms(k, k, L.k_norm, T, KV, hd));
    const float* inv = L.sliding ? inv_freq_sliding_ : inv_freq_full_;
    RETURN_IF_ERROR(gpu::Rope({q, dev_i32(pos_in), inv, T, H, hd, 0}, stream_));
    RETURN_IF_ERROR(gpu::Rope({k, dev_i32(pos_in), inv, T, KV, hd, 0}, stream_));
    gpu::KvWriteArgs w;
    w.k = k;
    w.v = v;
    w.k_pool = L.k_pool;
    w.v_pool = L.v_pool;
    w.slots = dev_i32(L.sliding ? ss_in : sf_in);
    w.tokens = T;
    w.hkv = KV;
    w.hd = hd;
    w.pool_slots = (L.sliding ? pools_.sliding_pages : pools_.full_pages) * kv::kPageTokens;
    RETURN_IF_ERROR(gpu::KvWrite(w, stream_));
    gpu::PagedAttentionArgs at;
    at.q = q;
    at.k_pool = L.k_pool;
    at.v_pool = L.v_pool;
    at.o = att;
    at.row_tokens = dev_i32(rt_in);
    at.row_start = dev_i32(rs_in);
    at.block_tables = dev_i32(L.sliding ? ts_in : tf_in);
    at.token_blocks = any_image ? dev_i32(blocks_in) : nullptr;
    at.table_stride = L.sliding ? stride_sliding : stride_full;
    at.rows = R;
    at.tokens = T;
    at.hq = H;
    at.hkv = KV;
    at.hd = hd;
    at.scale = static_cast<float>(1.0 / std::sqrt(t.query_pre_attn_scalar));
    at.sliding = L.sliding;
    at.window = t.sliding_window;
    if (planned) at.plan = L.sliding ? &view_sliding : &view_full;
    RETURN_IF_ERROR(gpu::PagedAttention(at, stream_));
    RETURN_IF_ERROR(linear(att, L.o, L.o_b, tmp, D, H * hd));
    // x += post_attn_norm(o); a = pre_ff_norm(x)
    RETURN_IF_ERROR(gpu::AddRmsNorm({tmp, L.post_attn, x, L.pre_ff, a, T, D, eps}, stream_));
    RETURN_IF_ERROR(linear(a, L.gate_up, nullptr, gu, 2 * I, D));
    RETURN_IF_ERROR(gpu::Geglu({gu, g, T, I}, stream_));
    RETURN_IF_ERROR(linear(g, L.down, nullptr, tmp, D, I));
    // x += post_ff_norm(mlp); a = the next layer's input_norm(x)
    const bf16* next = l + 1 < layers_.size() ? layers_[l + 1].input_norm : nullptr;
    RETURN_IF_ERROR(
        gpu::AddRmsNorm({tmp, L.post_ff, x, next, next ? a : nullptr, T, D, eps}, stream_));
  }

  // ---- logits of the rows that need them: final norm, LM head (tied: the embedding) ----
  std::vector<gpu::GreedyResult> greedy(static_cast<size_t>(G));
  std::vector<gpu::TopSummary> top_sums(static_cast<size_t>(TS));
  std::vector<int32_t> top_ids(static_cast<size_t>(TS * kTopCandidates));
  std::vector<float> top_values(top_ids.size());
  std::vector<uint16_t> host_logits(static_cast<size_t>(host_rows * V));
  if (M > 0) {
    for (int64_t i = 0; i < M; ++i) {
      CUDA_CHECK(cudaMemcpyAsync(h_in + i * D, x + logit_rows[static_cast<size_t>(i)] * D,
                                 static_cast<size_t>(D) * 2, cudaMemcpyDeviceToDevice, stream_));
    }
    RETURN_IF_ERROR(rms(h_in, h, final_norm_, M, 1, D));
    RETURN_IF_ERROR(
        gemm_->Run({h, lm_head_ ? lm_head_ : embed_, logits, M, V, D, nullptr, nullptr}, stream_));
    if (G > 0) {
      auto* results = reinterpret_cast<gpu::GreedyResult*>(base + greedy_at);
      gpu::GreedySampleArgs ga;
      ga.logits = logits;
      ga.rows = dev_i32(grow_in);
      ga.mask_of = dev_i32(gmask_of_in);
      ga.masks = reinterpret_cast<const uint32_t*>(inputs + gmask_in);
      ga.out = results;
      ga.samples = G;
      ga.logit_rows = M;
      ga.vocab = V;
      RETURN_IF_ERROR(gpu::GreedySample(ga, stream_));
      CUDA_CHECK(cudaMemcpyAsync(greedy.data(), results, greedy.size() * sizeof(greedy[0]),
                                 cudaMemcpyDeviceToHost, stream_));
    }
    if (TS > 0) {
      gpu::TopCandidatesArgs ta;
      ta.logits = logits;
      ta.rows = dev_i32(trow_in);
      ta.mask_of = dev_i32(tmask_of_in);
      ta.masks = reinterpret_cast<const uint32_t*>(inputs + gmask_in);
      ta.temperature = reinterpret_cast<const float*>(inputs + ttemp_in);
      ta.ids = reinterpret_cast<int32_t*>(base + top_ids_at);
      ta.values = reinterpret_cast<float*>(base + top_values_at);
      ta.out = reinterpret_cast<gpu::TopSummary*>(base + top_sum_at);
      ta.samples = TS;
      ta.logit_rows = M;
      ta.vocab = V;
      ta.capacity = kTopCandidates;
      RETURN_IF_ERROR(gpu::TopCandidates(ta, stream_));
      CUDA_CHECK(cudaMemcpyAsync(top_sums.data(), ta.out, top_sums.size() * sizeof(top_sums[0]),
                                 cudaMemcpyDeviceToHost, stream_));
      CUDA_CHECK(cudaMemcpyAsync(top_ids.data(), ta.ids, top_ids.size() * 4, cudaMemcpyDeviceToHost,
                                 stream_));
      CUDA_CHECK(cudaMemcpyAsync(top_values.data(), ta.values, top_values.size() * 4,
                                 cudaMemcpyDeviceToHost, stream_));
    }
    // The host's rows, each a contiguous run of the logits buffer.
    int64_t at = 0;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t count = logit_count[static_cast<size_t>(r)];
      const int64_t dst = host_at[static_cast<size_t>(r)];
      if (dst >= 0) {
        CUDA_CHECK(cudaMemcpyAsync(host_logits.data() + dst * V, logits + at * V,
                                   static_cast<size_t>(count * V) * 2, cudaMemcpyDeviceToHost,
                                   stream_));
      }
      at += count;
    }
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));

  // ---- the samples: the device's greedy results, or SampleRef (kernels/cpu/sample.h) ----
  auto widen = [V](const uint16_t* bits, int64_t count) {
    std::vector<float> f(static_cast<size_t>(count * V));
    for (size_t i = 0; i < f.size(); ++i) f[i] = Bf16BitsToFloat(bits[i]);
    return f;
  };
  std::vector<StepOutput> out(rows.size());
  int64_t at_row = 0;
  for (int64_t r = 0; r < R; ++r) {
    const StepRow& row = rows[static_cast<size_t>(r)];
    const int64_t count = logit_count[static_cast<size_t>(r)];
    const int64_t first_logit_row = at_row;
    at_row += count;
    if (count == 0) continue;
    StepOutput& o = out[static_cast<size_t>(r)];
    const int64_t sample = greedy_of[static_cast<size_t>(r)];
    const int64_t ranked = top_of[static_cast<size_t>(r)];
    if (ranked >= 0) {
      const gpu::TopSummary& sum = top_sums[static_cast<size_t>(ranked)];
      if (sum.count > 0) {
        const size_t first = static_cast<size_t>(ranked * kTopCandidates);
        RankedPrefix prefix;
        prefix.ids = std::span<const int32_t>(top_ids.data() + first, sum.count);
        prefix.logits = std::span<const float>(top_values.data() + first, sum.count);
        prefix.candidates = sum.allowed;
        prefix.z1 = sum.z1;
        prefix.zt = sum.zt;
        if (std::optional<SampleResult> s = SampleFromPrefix(prefix, row.sampling, row.draw)) {
          o.token = s->token;
          o.logprob = s->logprob;
          continue;
        }
      }
      // The rules read past the prefix (a flat distribution without top-k), or NaN/inf, or an
      // empty mask: the row comes back for SampleRef, as below.
    }
    if (sample >= 0 || ranked >= 0) {
      if (sample >= 0) {
        const gpu::GreedyResult& res = greedy[static_cast<size_t>(sample)];
        if (res.allowed > 0 && res.nonfinite == 0) {
          o.token = res.token;
          o.logprob = res.logprob;
          continue;
        }
      }
      // NaN/inf among the allowed logits, or a mask that allows nothing: SampleRef's rules and
      // error message decide, on this row's logits (rare: a broken model or a grammar bug).
      std::vector<uint16_t> bits(static_cast<size_t>(V));
      CUDA_CHECK(cudaMemcpy(bits.data(), logits + (first_logit_row + count - 1) * V,
                            bits.size() * 2, cudaMemcpyDeviceToHost));
      const std::vector<float> f = widen(bits.data(), 1);
      ASSIGN_OR_RETURN(SampleResult s, SampleRef(f, row.sampling, row.draw, row.allowed, 0));
      o.token = s.token;
      o.logprob = s.logprob;
      continue;
    }
    std::vector<float> f = widen(host_logits.data() + host_at[static_cast<size_t>(r)] * V, count);
    if (row.sample) {
      const std::span<const float> last(f.data() + f.size() - V, static_cast<size_t>(V));
      ASSIGN_OR_RETURN(SampleResult s,
                       SampleRef(last, row.sampling, row.draw, row.allowed, row.top_logprobs));
      o.token = s.token;
      o.logprob = s.logprob;
      o.top_logprobs = std::move(s.top_logprobs);
    }
    if (row.logits != LogitsMode::kNone) o.logits = std::move(f);
  }
  return out;
}

}  // namespace vlmserve
