// Index math shared by the CUDA kernels and their CPU tests: every stride, window and pairing a
// kernel computes lives here as a __host__ __device__ function, so it is tested on the CPU (against
// the reference ops in kernels/cpu) before a GPU ever runs it. Plain C++ when not compiled by nvcc.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define VLMSERVE_HD __host__ __device__ inline
#else
#define VLMSERVE_HD inline
#endif

namespace vlmserve::idx {

// Patch embedding as im2col (spec §4 step 1): for an image [c, s, s] cut into p × p patches,
// patch q = row · (s / p) + col, feature f in (channel, ky, kx) order — the conv weight's
// [d, c, p, p] layout — reads the pixel at this offset into the image.
VLMSERVE_HD int64_t PatchPixelOffset(int64_t q, int64_t f, int64_t s, int64_t p) {
  const int64_t per_side = s / p;
  const int64_t row = q / per_side, col = q % per_side;
  const int64_t ch = f / (p * p), r = f % (p * p);
  const int64_t ky = r / p, kx = r % p;
  return (ch * s + row * p + ky) * s + col * p + kx;
}

// Patch-grid average pooling (spec §5): output token t = i · (side / kernel) + j averages the
// kernel × kernel window; window element a = ky · kernel + kx is this input patch.
VLMSERVE_HD int64_t PoolInputPatch(int64_t t, int64_t a, int64_t side, int64_t kernel) {
  const int64_t out_side = side / kernel;
  const int64_t i = t / out_side, j = t % out_side;
  const int64_t ky = a / kernel, kx = a % kernel;
  return (i * kernel + ky) * side + j * kernel + kx;
}

// The window's top-left patch; window element (ky, kx) is PoolWindowStart + ky · side + kx
// (= PoolInputPatch(t, ky · kernel + kx, …)), which lets a kernel walk the window without dividing.
VLMSERVE_HD int64_t PoolWindowStart(int64_t t, int64_t side, int64_t kernel) {
  return PoolInputPatch(t, 0, side, kernel);
}

// RoPE rotate-half pairing (spec §6.4): element i < half rotates together with i + half, using
// frequency index i; RopeFreqIndex gives that index for any element of the head.
VLMSERVE_HD int64_t RopePartner(int64_t i, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  return i < half ? i + half : i - half;
}
VLMSERVE_HD int64_t RopeFreqIndex(int64_t i, int64_t head_dim) { return i % (head_dim / 2); }

// Row r of a per-head op over a [tokens, …] buffer whose token rows are `token_stride` elements
// apart and hold `heads` heads of `dim` elements from the row start (e.g. the q or k part of a
// fused qkv row): row r = token · heads + head starts at this offset. heads = 1 and
// token_stride = dim is a plain contiguous [rows, dim] matrix.
VLMSERVE_HD int64_t HeadRowOffset(int64_t r, int64_t heads, int64_t dim, int64_t token_stride) {
  return (r / heads) * token_stride + (r % heads) * dim;
}

}  // namespace vlmserve::idx
