// Where the tensor-core attention kernels (kernels/cuda/attention_vision72.cu) put things: the
// element each lane holds in an mma.sync m16n8k16 fragment, and the shared-memory row and column
// each lane hands to ldmatrix. __host__ __device__, so tests/kernels/index_math_test.cc runs the
// kernel's exact addressing through a CPU model of ldmatrix and mma (PTX ISA semantics) and checks
// that it computes Q·Kᵀ and P·V.
//
// PTX facts used (lane = 0..31, g = lane / 4, q = lane % 4):
//   C/D fragment (16×8 fp32): element e ∈ 0..3 is (row g + 8·(e ≥ 2), column 2q + e % 2).
//   A fragment (16×16 bf16, four 32-bit registers of two): a0 (g, 2q..), a1 (g+8, 2q..),
//   a2 (g, 2q+8..), a3 (g+8, 2q+8..). B fragment (16×8): b0 rows k = 2q, 2q+1 of column g;
//   b1 rows 2q+8, 2q+9.
//   ldmatrix .x4: lanes 8i..8i+7 give the 8 row addresses of matrix i, which lands in register i;
//   without .trans a lane receives row g, columns 2q, 2q+1 of each matrix; with .trans, column g
//   of rows 2q, 2q+1. .x2: lanes 0..15 give the addresses of matrices 0 and 1.
#pragma once

#include "kernels/index_math.h"

namespace vlmserve::mma {

// The (row, column) of element e of a lane's C/D fragment.
VLMSERVE_HD int CRow(int lane, int e) { return (lane >> 2) + (e >= 2 ? 8 : 0); }
VLMSERVE_HD int CCol(int lane, int e) { return (lane & 3) * 2 + (e & 1); }

// ldmatrix.x4 addresses for an A fragment of rows [row0, row0 + 16) and columns [col0, col0 + 16)
// of a row-major tile (Q: rows are query tokens, columns head dimensions).
VLMSERVE_HD int ARow(int row0, int lane) { return row0 + (lane & 15); }
VLMSERVE_HD int ACol(int col0, int lane) { return col0 + (lane >> 4) * 8; }

// ldmatrix.x4 (no .trans) addresses that give the B fragments of two n-tiles, keys [key0, key0 + 8)
// and [key0 + 8, key0 + 16), for k-step columns [col0, col0 + 16) of a tile whose rows are keys
// (K for S = Q·Kᵀ): registers 0, 1 = b0, b1 of the first n-tile; 2, 3 = of the second.
VLMSERVE_HD int BKeyRow(int key0, int lane) { return key0 + ((lane >> 3) >> 1) * 8 + (lane & 7); }
VLMSERVE_HD int BKeyCol(int col0, int lane) { return col0 + ((lane >> 3) & 1) * 8; }

// ldmatrix.x4.trans addresses that give the B fragments of two n-tiles, output columns
// [col0, col0 + 8) and [col0 + 8, col0 + 16), for the k-step of keys [key0, key0 + 16) of a tile
// whose rows are keys and columns head dimensions (V for O = P·V): registers 0, 1 = b0, b1 of the
// first n-tile; 2, 3 = of the second. With .x2 (one n-tile, columns [col0, col0 + 8)) the same
// rows serve, and the column is col0 for every lane (VColX2).
VLMSERVE_HD int VKeyRow(int key0, int lane) { return key0 + ((lane >> 3) & 1) * 8 + (lane & 7); }
VLMSERVE_HD int VCol(int col0, int lane) { return col0 + ((lane >> 3) >> 1) * 8; }
VLMSERVE_HD int VColX2(int col0, int /*lane*/) { return col0; }

// P (the exponentiated S fragments of n-tiles 2kk and 2kk + 1, keys [16kk, 16kk + 16)) as the A
// fragment of O += P·V's k-step kk: register r of A takes elements (first, first + 1) of S n-tile
// PTile(kk, r) — the C layout of two n-tiles is the A layout of one 16-wide k-step.
VLMSERVE_HD int PTile(int kk, int r) { return 2 * kk + (r >> 1); }
VLMSERVE_HD int PFirst(int r) { return (r & 1) * 2; }

}  // namespace vlmserve::mma
