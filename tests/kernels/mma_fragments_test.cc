// The tensor-core attention's addressing (kernels/mma_fragments.h) through a CPU model of
// ldmatrix and mma.sync m16n8k16 written from the PTX ISA's fragment tables: with the same
// helpers the kernels use (attention_vision72.cu at d = 72, attention_paged.cu's prefill at
// d = 256), a warp's tile must compute S = Q·Kᵀ over the padded head dimension and O = P·V over
// exactly d columns, equal to direct products. A wrong
// lane mapping gives wrong elements, not small errors, so the comparison is exact (values are
// small integers).
#include "kernels/mma_fragments.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

using Frag = std::array<std::array<float, 2>, 4>;  // a lane's 4 registers of 2 values (lo, hi)
using Warp = std::array<Frag, 32>;

// ldmatrix (.x4 or .x2; .trans or not) from a row-major tile with `stride` columns: `row(lane)`
// and `col(lane)` are the address each lane gives (only lanes 0..8·count−1 are read).
template <typename RowFn, typename ColFn>
Warp Ldmatrix(const std::vector<float>& tile, int stride, int count, bool trans, RowFn row,
              ColFn col) {
  Warp out{};
  for (int m = 0; m < count; ++m) {
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, q = lane % 4;
      for (int h = 0; h < 2; ++h) {
        // Row r of matrix m starts at the address lane 8m + r gave.
        const int r = trans ? 2 * q + h : g, c = trans ? g : 2 * q + h;
        out[lane][m][h] = tile[row(8 * m + r) * stride + col(8 * m + r) + c];
      }
    }
  }
  return out;
}

// d (C layout, [lane][e]) += A·B for one m16n8k16 with A and B given as fragments.
void Mma(std::array<std::array<float, 4>, 32>& d, const Warp& a, const Warp& b, int b0, int b1) {
  float A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, q = lane % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * q + h] = a[lane][0][h];
      A[g + 8][2 * q + h] = a[lane][1][h];
      A[g][2 * q + 8 + h] = a[lane][2][h];
      A[g + 8][2 * q + 8 + h] = a[lane][3][h];
      B[2 * q + h][g] = b[lane][b0][h];
      B[2 * q + 8 + h][g] = b[lane][b1][h];
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < 4; ++e) {
      const int r = mma::CRow(lane, e), c = mma::CCol(lane, e);
      for (int k = 0; k < 16; ++k) d[lane][e] += A[r][k] * B[k][c];
    }
  }
}

// One key tile through a kernel's addressing: head_dim `d` in shared rows of `row_stride`, `keys`
// keys (n-tiles of 8 in pairs), S over `ksteps` k-steps of 16 (d padded with zero columns up to
// 16 · ksteps), O over the pairs of n-tiles that fit in d and, when d % 16 == 8, one .x2 tail.
void CheckTile(int d, int row_stride, int keys, int ksteps) {
  constexpr int kRows = 32;  // two warps' rows
  const int pv_pairs = d / 16, tail = d % 16 == 8 ? 1 : 0, out_tiles = 2 * pv_pairs + tail;
  testing::Rng rng(static_cast<uint64_t>(d));
  auto small = [&](int n) {  // small integers: every product and sum exact in float
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(static_cast<int>(rng.Uniform(1)[0] * 4.f));
    return v;
  };
  std::vector<float> q(kRows * row_stride, 0.f), k(keys * row_stride, 0.f), v(keys * row_stride, 0.f);
  for (int r = 0; r < kRows; ++r) {
    auto x = small(d);
    std::copy(x.begin(), x.end(), q.begin() + r * row_stride);  // columns ≥ d stay 0 (padding)
  }
  for (int r = 0; r < keys; ++r) {
    auto x = small(d), y = small(d);
    std::copy(x.begin(), x.end(), k.begin() + r * row_stride);
    std::copy(y.begin(), y.end(), v.begin() + r * row_stride);
  }
  using Tile = std::array<std::array<float, 4>, 32>;
  for (int warp = 0; warp < 2; ++warp) {
    // S = Q Kᵀ: keys / 8 n-tiles, read two at a time.
    std::vector<Tile> s(keys / 8, Tile{});
    for (int ks = 0; ks < ksteps; ++ks) {
      const Warp qa = Ldmatrix(q, row_stride, 4, false,
                               [&](int l) { return mma::ARow(warp * 16, l); },
                               [&](int l) { return mma::ACol(ks * 16, l); });
      for (int np = 0; np < keys / 16; ++np) {
        const Warp kb = Ldmatrix(k, row_stride, 4, false,
                                 [&](int l) { return mma::BKeyRow(np * 16, l); },
                                 [&](int l) { return mma::BKeyCol(ks * 16, l); });
        Mma(s[2 * np], qa, kb, 0, 1);
        Mma(s[2 * np + 1], qa, kb, 2, 3);
      }
    }
    auto dot = [&](int row, int key) {
      float want = 0;
      for (int c = 0; c < d; ++c) want += q[row * row_stride + c] * k[key * row_stride + c];
      return want;
    };
    for (int j = 0; j < keys / 8; ++j) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int e = 0; e < 4; ++e) {
          const int row = warp * 16 + mma::CRow(lane, e), key = j * 8 + mma::CCol(lane, e);
          ASSERT_EQ(s[j][lane][e], dot(row, key)) << "d " << d << " S row " << row << " key " << key;
        }
      }
    }
    // P := S (any values do); O = P V over k-steps of 16 keys.
    std::vector<Tile> o(out_tiles, Tile{});
    for (int kk = 0; kk < keys / 16; ++kk) {
      Warp pa{};
      for (int lane = 0; lane < 32; ++lane) {
        for (int r = 0; r < 4; ++r) {
          pa[lane][r] = {s[mma::PTile(kk, r)][lane][mma::PFirst(r)],
                         s[mma::PTile(kk, r)][lane][mma::PFirst(r) + 1]};
        }
      }
      auto vrow = [&](int l) { return mma::VKeyRow(kk * 16, l); };
      for (int np = 0; np < pv_pairs; ++np) {
        const Warp vb =
            Ldmatrix(v, row_stride, 4, true, vrow, [&](int l) { return mma::VCol(np * 16, l); });
        Mma(o[2 * np], pa, vb, 0, 1);
        Mma(o[2 * np + 1], pa, vb, 2, 3);
      }
      if (tail) {
        const Warp vb = Ldmatrix(v, row_stride, 2, true, vrow,
                                 [&](int l) { return mma::VColX2(pv_pairs * 16, l); });
        Mma(o[out_tiles - 1], pa, vb, 0, 1);
      }
    }
    for (int t = 0; t < out_tiles; ++t) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int e = 0; e < 4; ++e) {
          const int row = mma::CRow(lane, e), col = t * 8 + mma::CCol(lane, e);
          float want = 0;  // P[row][key] = S of this warp's row `row`
          for (int key = 0; key < keys; ++key) {
            want += dot(warp * 16 + row, key) * v[key * row_stride + col];
          }
          ASSERT_EQ(o[t][lane][e], want) << "d " << d << " O row " << row << " column " << col;
        }
      }
    }
  }
}

// attention_vision72.cu: d = 72 in rows of 88, 64-key tiles, S over 5 k-steps (72 → 80), O over
// 4 pairs of n-tiles and the .x2 tail (exactly 72 columns).
TEST(MmaFragmentsTest, TheVisionKernelsAddressingComputesQKtAndPV) { CheckTile(72, 88, 64, 5); }

// attention_paged.cu's prefill: d = 256 in rows of 264, 32-key tiles, S over 16 k-steps, O over
// 16 pairs of n-tiles.
TEST(MmaFragmentsTest, ThePrefillKernelsAddressingComputesQKtAndPV) { CheckTile(256, 264, 32, 16); }

}  // namespace
}  // namespace vlmserve
