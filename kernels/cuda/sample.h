// Greedy sampling on the device: for each sampled logits row, the token SampleRef
// (kernels/cpu/sample) would return at temperature 0 — the allowed token with the highest logit,
// the lowest id among equals (kernels/sample_select.h) — and its log-probability over the allowed
// tokens at temperature 1, summed in double as SampleRef does (the sum's order differs, so the
// logprob may differ from SampleRef's in its last bits; the token never does). Only a few bytes per
// row come back to the host instead of the whole [vocab] row (262,208 logits for Gemma 3).
//
// A row is left to SampleRef on the host (the runner copies its logits) when its result says so:
// `nonfinite` > 0 (a NaN or ±inf among the allowed logits: SampleRef's own rules decide those) or
// `allowed` == 0 (the mask allows nothing: SampleRef's error message). Sampling at a temperature,
// top-k/top-p and top_logprobs also stay on the host for now (they need the sorted vocabulary).
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

}  // namespace vlmserve::gpu
