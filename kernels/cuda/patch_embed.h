// SigLIP patch embedding on the device (spec §4 steps 1-2), from the processor's float32 pixels:
//   patches = bf16(pixels) as im2col rows   (spec §2.4: bf16 inference rounds the pixels first)
//   y[img]  = bf16( patches[img] · Wᵀ + b + pos )   one cuBLASLt GEMM per image, bias epilogue,
//                                                   the position table as the addend (beta = 1)
// transformers rounds the conv output (with bias) to bf16 and rounds again after adding the
// position embedding; here the sum is rounded once. Reference: kernels/cpu/patch_embed + the
// position add; im2col indices: idx::PatchPixelOffset.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/gemm.h"

namespace vlmserve::gpu {

struct PatchEmbedArgs {
  const float* pixels = nullptr;        // [n, c, s, s] float32 (device)
  const __nv_bfloat16* w = nullptr;     // [d, c · p · p]: the conv weight [d, c, p, p] as stored
  const __nv_bfloat16* bias = nullptr;  // [d]
  const __nv_bfloat16* pos = nullptr;   // [(s / p)², d] position embeddings
  __nv_bfloat16* patches = nullptr;     // scratch [n · (s / p)², c · p · p]
  __nv_bfloat16* y = nullptr;           // [n, (s / p)², d]
  int64_t n = 0, c = 0, s = 0, p = 0, d = 0;
};
Status PatchEmbed(CublasLtGemm& gemm, const PatchEmbedArgs& args, cudaStream_t stream);

// Just the im2col step (exposed for tests and benchmarks).
Status Im2colBf16(const PatchEmbedArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
