// The tensor-core attention's addressing (kernels/mma_fragments.h) through a CPU model of
// ldmatrix and mma.sync m16n8k16 written from the PTX ISA's fragment tables: with the same
// helpers the kernel uses (attention_vision72.cu), a warp's tile must compute S = Q·Kᵀ over the
// padded head dimension and O = P·V over exactly 72 columns, equal to direct products. A wrong
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

TEST(MmaFragmentsTest, TheKernelsAddressingComputesQKtAndPV) {
  constexpr int kD = 72, kRow = 88, kRows = 32, kKeys = 64;  // two warps' rows, one key tile
  testing::Rng rng(7);
  auto small = [&](int n) {  // small integers: every product and sum exact in float
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(static_cast<int>(rng.Uniform(1)[0] * 4.f));
    return v;
  };
  std::vector<float> q(kRows * kRow, 0.f), k(kKeys * kRow, 0.f), v(kKeys * kRow, 0.f);
  for (int r = 0; r < kRows; ++r) {
    auto x = small(kD);
    std::copy(x.begin(), x.end(), q.begin() + r * kRow);  // columns 72..87 stay 0 (the padding)
  }
  for (int r = 0; r < kKeys; ++r) {
    auto x = small(kD), y = small(kD);
    std::copy(x.begin(), x.end(), k.begin() + r * kRow);
    std::copy(y.begin(), y.end(), v.begin() + r * kRow);
  }
  for (int warp = 0; warp < 2; ++warp) {
    // S = Q Kᵀ: 8 n-tiles of 8 keys, 5 k-steps of 16 over the padded head dimension.
    std::array<std::array<std::array<float, 4>, 32>, 8> s{};
    for (int ks = 0; ks < 5; ++ks) {
      const Warp qa = Ldmatrix(q, kRow, 4, false, [&](int l) { return mma::ARow(warp * 16, l); },
                               [&](int l) { return mma::ACol(ks * 16, l); });
      for (int np = 0; np < 4; ++np) {
        const Warp kb = Ldmatrix(k, kRow, 4, false, [&](int l) { return mma::BKeyRow(np * 16, l); },
                                 [&](int l) { return mma::BKeyCol(ks * 16, l); });
        Mma(s[2 * np], qa, kb, 0, 1);
        Mma(s[2 * np + 1], qa, kb, 2, 3);
      }
    }
    for (int j = 0; j < 8; ++j) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int e = 0; e < 4; ++e) {
          const int row = warp * 16 + mma::CRow(lane, e), key = j * 8 + mma::CCol(lane, e);
          float want = 0;
          for (int d = 0; d < kD; ++d) want += q[row * kRow + d] * k[key * kRow + d];
          ASSERT_EQ(s[j][lane][e], want) << "S row " << row << " key " << key;
        }
      }
    }
    // P := S (any values do); O = P V over 4 k-steps of 16 keys, 9 n-tiles of 8 columns.
    std::array<std::array<std::array<float, 4>, 32>, 9> o{};
    for (int kk = 0; kk < 4; ++kk) {
      Warp pa{};
      for (int lane = 0; lane < 32; ++lane) {
        for (int r = 0; r < 4; ++r) {
          pa[lane][r] = {s[mma::PTile(kk, r)][lane][mma::PFirst(r)],
                         s[mma::PTile(kk, r)][lane][mma::PFirst(r) + 1]};
        }
      }
      auto vrow = [&](int l) { return mma::VKeyRow(kk * 16, l); };
      for (int np = 0; np < 4; ++np) {
        const Warp vb = Ldmatrix(v, kRow, 4, true, vrow, [&](int l) { return mma::VCol(np * 16, l); });
        Mma(o[2 * np], pa, vb, 0, 1);
        Mma(o[2 * np + 1], pa, vb, 2, 3);
      }
      const Warp vb = Ldmatrix(v, kRow, 2, true, vrow, [&](int l) { return mma::VColX2(64, l); });
      Mma(o[8], pa, vb, 0, 1);
    }
    for (int t = 0; t < 9; ++t) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int e = 0; e < 4; ++e) {
          const int row = mma::CRow(lane, e), col = t * 8 + mma::CCol(lane, e);
          float want = 0;  // P[row][key] = S of this warp's row `row`
          for (int key = 0; key < kKeys; ++key) {
            float p = 0;
            for (int d = 0; d < kD; ++d) p += q[(warp * 16 + row) * kRow + d] * k[key * kRow + d];
            want += p * v[key * kRow + col];
          }
          ASSERT_EQ(o[t][lane][e], want) << "O row " << row << " column " << col;
        }
      }
    }
  }
}

}  // namespace
}  // namespace vlmserve
