// CudaModelRunner: the ModelRunner on one NVIDIA GPU, bf16 — the same Step interface as the CPU
// reference (model/model_runner.h), built from the kernels of kernels/cuda:
//
//   EncodeImages  pixels (fp32, host) → PatchEmbed (+ position embeddings) → SigLIP layers
//                 (LayerNorm, q/k/v GEMMs with bias, DenseAttention, out GEMM + residual,
//                 LayerNorm, fc1 + GELU-tanh, fc2 + residual) → post LayerNorm → AvgPool →
//                 RMSNorm → projector GEMM: soft tokens [n, mm_tokens, D] kept on the device
//                 under the returned handle. All of it is queued on a second stream (its own
//                 cuBLASLt workspace) and the call returns without waiting: the scheduler
//                 prefills a sequence in the step after its images are encoded, so that step's
//                 decoder work (other sequences) overlaps the vision batch; a Step row that
//                 reads a batch makes the decoder stream wait on the batch's event.
//   Step          all rows' tokens at once: Embedding (× bf16(√D), soft tokens copied in) →
//                 per layer RMSNorm, q/k/v GEMMs, per-head q/k RMSNorm, RoPE (local or global
//                 frequencies), KvWrite into the layer's pages, PagedAttention over every row's
//                 block table, o GEMM, AddRmsNorm (post-attention norm + residual + pre-FF norm),
//                 one gate|up GEMM (the weights concatenated at load), GeGLU, down GEMM,
//                 AddRmsNorm (+ the next layer's input norm) → the final norm and the LM head on
//                 the rows that need logits → sampling.
//
// Weights are uploaded once as bf16 (bf16 copied; f16/f32 rounded once; a LoRA adapter's merged
// tensors arrive already rounded to bf16, ServeEngine::Load asks for that), the projector's
// input-major weight transposed to nn.Linear layout. KV pools: per layer K and V, [pages, 16,
// kv_heads, head_dim] bf16, sized by `kv_pages`.
//
// Sampling: greedy rows on the device (kernels/cuda/sample: the token and its logprob come back,
// not the 262,208 logits); rows at a temperature ranked on the device (the best 512 tokens, the
// counts and the sums come back; the host draws with kernels/cpu/sample.h's SampleFromPrefix:
// top-k, top-p, the counter-based draw); top_logprobs, rows that ask for logits, and rows whose
// draw reads past the 512 (a flat distribution without top-k), hold NaN/inf or whose mask allows
// nothing copy their logits back for SampleRef.
//
// Weights go up through two pinned 32 MiB stages (conversion of the next tensor overlaps the copy),
// with progress reports about every 10 % (on_load_progress; the server logs them); each step's
// inputs are staged in pinned memory and copied once. Attention is planned once per step and layer
// kind (kernels/attention_plan.h: flash-decoding and the head_dim-256 tensor-core prefill).
//
// Status: WRITTEN IN A CPU SESSION AND NEVER RUN ON A GPU (issue 25). Not yet: CUDA graphs for
// decode. The KV cache is sized by model/kv_sizing.h
// (--kv-cache-tokens, -bytes or
// --gpu-memory-fraction, measured after the weights are uploaded). A sticky CUDA error is reported
// by Health() (reliability.md G10). `--device auto` keeps the CPU runner until the GPU check
// (scripts/gpu/check.sh) has passed.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "kernels/cuda/gemm.h"
#include "model/kv_sizing.h"
#include "model/model_runner.h"
#include "model/weights/checkpoint.h"

namespace vlmserve {

struct CudaRunnerOptions {
  int64_t kv_pages = 0;  // pages per pool (full and sliding); 0 = sized by `kv`
  // model/kv_sizing.h: tokens, bytes, or a fraction of the device's memory measured once the
  // weights are on it; none set = 16384 tokens (the server sets --gpu-memory-fraction 0.9).
  KvSizing kv;
  // Device memory kept free beside the weights and the KV cache when sizing by fraction: step
  // buffers (activations of a 512-token step, logits of 64 rows: ~100 MB for the 4B), vision
  // batches (~40 MB per 896² image) and cuBLASLt's workspace.
  uint64_t reserve_bytes = uint64_t{1} << 30;
  int device = 0;  // CUDA device ordinal
  // Called as the weights reach the device (bytes so far, total): about every 10 % and at the end.
  std::function<void(uint64_t done, uint64_t total)> on_load_progress;
};

// Memory owned by one object, freed on destruction; grows on demand, never shrinks.
//   kDevice      GPU memory (cudaMalloc).
//   kPinnedHost  page-locked host memory (cudaMallocHost): copies from it run asynchronously at the
//                full link rate (from pageable memory the driver copies through its own staging,
//                synchronously). The system may refuse to lock much (ulimit -l, containers).
enum class MemoryKind { kDevice, kPinnedHost };
template <MemoryKind K>
class CudaMemory {
 public:
  CudaMemory() = default;
  ~CudaMemory();
  CudaMemory(const CudaMemory &) = delete;
  CudaMemory &operator=(const CudaMemory &) = delete;
  CudaMemory(CudaMemory &&o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  // At least `bytes` (contents are lost when it grows); RESOURCE_EXHAUSTED when it cannot be had.
  Status Reserve(size_t bytes);
  uint8_t *data() const { return static_cast<uint8_t *>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};
using DeviceMemory = CudaMemory<MemoryKind::kDevice>;
using PinnedMemory = CudaMemory<MemoryKind::kPinnedHost>;

// A CUDA event owned by one object (destroyed with it; a pending one is released by the driver
// once it completes). `timing` events can measure the time between two of them.
class CudaEvent {
 public:
  CudaEvent() = default;
  ~CudaEvent();
  CudaEvent(const CudaEvent &) = delete;
  CudaEvent &operator=(const CudaEvent &) = delete;
  CudaEvent(CudaEvent &&o) noexcept : ev_(o.ev_) { o.ev_ = nullptr; }
  Status Create(bool timing);
  cudaEvent_t get() const { return ev_; }

 private:
  cudaEvent_t ev_ = nullptr;
};

class CudaModelRunner : public ModelRunner {
 public:
  static StatusOr<std::unique_ptr<CudaModelRunner>> Create(const Checkpoint &ck,
                                                           const Gemma3Config &config,
                                                           const CudaRunnerOptions &options = {});
  ~CudaModelRunner() override;

  const Gemma3Config &config() const override { return config_; }
  const char *device() const override { return "cuda"; }
  KvPoolSizes kv_pages() const override { return pools_; }
  RunnerMemory memory() const override { return memory_; }
  StatusOr<ImageHandle> EncodeImages(std::span<const float> pixel_values, int64_t n) override;
  // Waits for the batch's queued work before its memory goes.
  void ReleaseImages(ImageHandle handle) override;
  size_t live_image_batches() const override { return images_.size(); }
  bool EncodesAsync() const override { return true; }
  int64_t ImagesDeviceMicros(ImageHandle handle) const override;
  StatusOr<std::vector<float>> ReadImages(ImageHandle handle) const override;
  StatusOr<std::vector<StepOutput>> Step(std::span<const StepRow> rows) override;
  // A sticky error (illegal address, launch failure, ...) poisons the context: every later call
  // returns it. cudaStreamQuery reports it without waiting.
  Status Health() const override;

  uint64_t weight_bytes() const { return weights_.bytes(); }
  uint64_t kv_bytes() const { return kv_.bytes(); }

 private:
  using bf16 = __nv_bfloat16;
  struct VisionLayer {
    const bf16 *ln1_w = nullptr, *ln1_b = nullptr, *q_w = nullptr, *q_b = nullptr;
    const bf16 *k_w = nullptr, *k_b = nullptr, *v_w = nullptr, *v_b = nullptr;
    const bf16 *o_w = nullptr, *o_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;
    const bf16 *fc1_w = nullptr, *fc1_b = nullptr, *fc2_w = nullptr, *fc2_b = nullptr;
  };
  struct DecoderLayer {
    bool sliding = false;
    const bf16 *input_norm = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
    const bf16 *q_b = nullptr, *k_b = nullptr, *v_b = nullptr, *o_b = nullptr;
    const bf16 *q_norm = nullptr, *k_norm = nullptr, *post_attn = nullptr, *pre_ff = nullptr;
    const bf16 *gate_up = nullptr, *down = nullptr, *post_ff = nullptr;
    bf16 *k_pool = nullptr, *v_pool = nullptr;
  };
  struct ImageBatch {
    int64_t n = 0;
    DeviceMemory soft;  // [n, mm_tokens_per_image, D] bf16
    // Recorded on vision_stream_ before and after the batch's work: readers of `soft` wait on
    // `done`; the interval is the batch's device time.
    CudaEvent start, done;
  };
  Status EnqueueVision(std::span<const float> pixel_values, int64_t n, ImageBatch &batch);

  explicit CudaModelRunner(Gemma3Config c) : config_(std::move(c)) {}
  Status Upload(const Checkpoint &ck, const CudaRunnerOptions &options);
  Status Validate(const StepRow &row) const;

  Gemma3Config config_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;                     // the decoder (Step)
  cudaStream_t vision_stream_ = nullptr;              // EncodeImages
  std::unique_ptr<CublasLtGemm> gemm_, vision_gemm_;  // one workspace per stream
  DeviceMemory weights_, kv_, step_scratch_, vision_scratch_;
  // A step's inputs, staged here and copied in one transfer (pinned; pageable when the system
  // refuses to lock memory).
  PinnedMemory host_pinned_;
  std::vector<uint8_t> host_pageable_;
  // A vision batch's pixels, staged for an asynchronous upload; pixels_copied_ marks the end of
  // the last upload from it.
  PinnedMemory vision_pinned_;
  CudaEvent pixels_copied_;
  // Vision tower and projector.
  const bf16 *patch_w_ = nullptr, *patch_b_ = nullptr, *pos_emb_ = nullptr;
  const bf16 *post_ln_w_ = nullptr, *post_ln_b_ = nullptr;
  const bf16 *soft_norm_ = nullptr, *proj_ = nullptr;  // proj_: [D, d] (transposed at upload)
  std::vector<VisionLayer> vision_;
  // Decoder.
  const bf16 *embed_ = nullptr, *final_norm_ = nullptr, *lm_head_ = nullptr;
  const float *inv_freq_full_ = nullptr, *inv_freq_sliding_ = nullptr;
  std::vector<DecoderLayer> layers_;
  KvPoolSizes pools_;
  RunnerMemory memory_;
  bool has_full_ = false, has_sliding_ = false;
  std::map<ImageHandle, ImageBatch> images_;
  ImageHandle next_handle_ = 1;
};

}  // namespace vlmserve
