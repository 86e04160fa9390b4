// Patch embedding (see patch_embed.h): an im2col kernel (one thread per patch feature; neighbouring
// threads read neighbouring pixels of a patch row) then the GEMM with bias and position addend.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/patch_embed.h"
#include "kernels/index_math.h"

namespace vlmserve::gpu {
namespace {

__global__ void Im2colKernel(PatchEmbedArgs a) {
  const int64_t per_side = a.s / a.p, patches = per_side * per_side, cols = a.c * a.p * a.p;
  const int64_t total = a.n * patches * cols, image = a.c * a.s * a.s;
  for (int64_t g = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; g < total;
       g += int64_t{gridDim.x} * blockDim.x) {
    const int64_t f = g % cols, q = (g / cols) % patches, img = g / (cols * patches);
    a.patches[g] =
        __float2bfloat16_rn(a.pixels[img * image + idx::PatchPixelOffset(q, f, a.s, a.p)]);
  }
}

Status Check(const PatchEmbedArgs& a) {
  if (!a.pixels || !a.w || !a.bias || !a.pos || !a.patches || !a.y)
    return BadArgs("PatchEmbed", "null pointer");
  if (a.n < 0 || a.c <= 0 || a.s <= 0 || a.p <= 0 || a.d <= 0)
    return BadArgs("PatchEmbed", "sizes must be positive");
  if (a.s % a.p != 0) return BadArgs("PatchEmbed", "the patch size must divide the image size");
  return Status::Ok();
}

}  // namespace

Status Im2colBf16(const PatchEmbedArgs& a, cudaStream_t stream) {
  RETURN_IF_ERROR(Check(a));
  const int64_t total = a.n * (a.s / a.p) * (a.s / a.p) * a.c * a.p * a.p;
  if (total == 0) return Status::Ok();
  constexpr int kThreads = 256;
  Im2colKernel<<<ElementBlocks(total, kThreads), kThreads, 0, stream>>>(a);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

Status PatchEmbed(CublasLtGemm& gemm, const PatchEmbedArgs& a, cudaStream_t stream) {
  RETURN_IF_ERROR(Im2colBf16(a, stream));
  const int64_t patches = (a.s / a.p) * (a.s / a.p), cols = a.c * a.p * a.p;
  for (int64_t img = 0; img < a.n; ++img) {
    GemmArgs g;
    g.x = a.patches + img * patches * cols;
    g.w = a.w;
    g.y = a.y + img * patches * a.d;
    g.m = patches;
    g.n = a.d;
    g.k = cols;
    g.bias = a.bias;
    g.add = a.pos;  // the same table for every image
    RETURN_IF_ERROR(gemm.Run(g, stream));
  }
  return Status::Ok();
}

}  // namespace vlmserve::gpu
