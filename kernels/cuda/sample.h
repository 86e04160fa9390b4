// Greedy sampling on the device: for each sampled logits row, the token SampleRef
// (kernels/cpu/sample) would return at temperature 0 — the allowed token with the highest logit,
// the lowest id among equals (kernels/sample_select.h) — and its log-probability over the allowed
// tokens at temperature 1, summed in double as SampleRef does (the sum's order differs, so the
// logprob may differ from SampleRef's in its last bits; the token never does). Only a few bytes per
// row come back to the host instead of the whole [vocab] row (262,208 logits for Gemma 3).
//
// A row is left to SampleRef on the host (the runner copies its logits) when its result says so:
// `nonfinite` > 0 (a NaN or ±inf among the allowed logits: SampleRef's own rules decide those) or
// `allowed` == 0 (the mask allows nothing: SampleRef's error message). top_logprobs stay on the
// host for now; sampling at a temperature: TopCandidates below.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct GreedyResult {
  int32_t token = -1;
  int32_t allowed = 0;    // allowed tokens in the row
  int32_t nonfinite = 0;  // allowed tokens whose logit is NaN or ±inf
  float logprob = 0.f;
};

struct GreedySampleArgs {
  const __nv_bfloat16* logits = nullptr;  // [logit rows, vocab]
  const int32_t* rows = nullptr;          // [samples] the logits row of each sample (device)
  // [samples] index of each sample's mask in `masks` (-1 = all allowed); null = no masks (device)
  const int32_t* mask_of = nullptr;
  const uint32_t* masks = nullptr;  // [masks, MaskWords(vocab)] allowed-token bitmasks (device)
  GreedyResult* out = nullptr;      // [samples] (device)
  int64_t samples = 0, logit_rows = 0, vocab = 0;
};
Status GreedySample(const GreedySampleArgs& args, cudaStream_t stream);

// Sampling at a temperature: the device ranks, the host draws. For each sampled row, one block
// finds the best `capacity` allowed tokens in SampleRef's order (higher logit, lower id on ties)
// with their logits, counts the allowed and the non-finite ones, and sums in double over every
// allowed token z1 = Σ exp(l − best) and zt = Σ exp(l/t − best/t) (t: the row's temperature).
// Those few KB come back instead of the row; kernels/cpu/sample.h's SampleFromPrefix applies
// top-k, top-p and the counter-based draw to them and gives SampleRef's token — except where the
// rules read past the prefix (a flat distribution without top-k) or the row has NaN/inf or allows
// nothing: then the runner copies the row back for SampleRef. Selection: a 4-pass radix select
// (8 bits a pass) of the capacity-th largest key, a gather in id order for the ties at it, a
// bitonic sort of the kept entries in shared memory.
inline constexpr int32_t kMaxTopCandidates = 512;

struct TopSummary {
  int32_t count = 0;      // entries written: min(capacity, allowed); 0 when nonfinite > 0
  int32_t allowed = 0;    // allowed tokens in the row
  int32_t nonfinite = 0;  // allowed tokens whose logit is NaN or ±inf
  int32_t unused = 0;
  double z1 = 0, zt = 0;
};

struct TopCandidatesArgs {
  const __nv_bfloat16* logits = nullptr;  // [logit rows, vocab]
  const int32_t* rows = nullptr;          // [samples] the logits row of each sample (device)
  const int32_t* mask_of = nullptr;       // [samples] mask index or -1; null = no masks (device)
  const uint32_t* masks = nullptr;        // [masks, MaskWords(vocab)] (device)
  const float* temperature = nullptr;     // [samples] > 0 (device)
  int32_t* ids = nullptr;                 // [samples, capacity] best first (device)
  float* values = nullptr;                // [samples, capacity] their logits (device)
  TopSummary* out = nullptr;              // [samples] (device)
  int64_t samples = 0, logit_rows = 0, vocab = 0;
  int32_t capacity = kMaxTopCandidates;  // 1 … kMaxTopCandidates
};
Status TopCandidates(const TopCandidatesArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
