// Attention reference (see attention.h). A query row whose mask allows no key produces zeros
// (never happens for Gemma 3's masks: every query sees itself).
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "kernels/kv_layout.h"

namespace vlmserve {

void AttentionRef(const AttentionRefArgs& a) {
  const int64_t group = a.hq / a.hkv;
  std::vector<double> p(static_cast<size_t>(a.sk));
  std::vector<double> acc(static_cast<size_t>(a.hd));
  for (int64_t h = 0; h < a.hq; ++h) {
    const int64_t kvh = h / group;
    for (int64_t i = 0; i < a.sq; ++i) {
      const float* qi = a.q + (i * a.hq + h) * a.hd;
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < a.sk; ++j) {
        if (a.mask && !a.mask[i * a.sk + j]) {
          p[j] = -std::numeric_limits<double>::infinity();
          continue;
        }
        const float* kj = a.k + (j * a.hkv + kvh) * a.hd;
        double dot = 0;
        for (int64_t d = 0; d < a.hd; ++d) dot += static_cast<double>(qi[d]) * kj[d];
        p[j] = dot * a.scale;
        if (p[j] > max) max = p[j];
      }
      double sum = 0;
      for (int64_t j = 0; j < a.sk; ++j) {
        p[j] = std::isinf(p[j]) ? 0.0 : std::exp(p[j] - max);
        sum += p[j];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < a.sk; ++j) {
        if (p[j] == 0.0) continue;
        const float* vj = a.v + (j * a.hkv + kvh) * a.hd;
        for (int64_t d = 0; d < a.hd; ++d) acc[d] += p[j] * vj[d];
      }
      float* oi = a.o + (i * a.hq + h) * a.hd;
      for (int64_t d = 0; d < a.hd; ++d) oi[d] = sum > 0 ? static_cast<float>(acc[d] / sum) : 0.f;
    }
  }
}

void PagedAttentionRef(const PagedAttentionRefArgs& a) {
  const int64_t group = a.hq / a.hkv, total = a.q_start + a.sq;
  const int64_t first = a.sliding ? kv::FirstSlidingKey(a.q_start, a.window) : 0;
  const int64_t nk = total - first;
  std::vector<double> p(static_cast<size_t>(nk));
  std::vector<double> acc(static_cast<size_t>(a.hd));
  // Each key's row (for kv head 0; head h is h · hd further), looked up once per call.
  std::vector<const float*> k_rows(static_cast<size_t>(nk)), v_rows(k_rows.size());
  for (int64_t j = 0; j < nk; ++j) {
    const int64_t pos = first + j;
    const int64_t off =
        kv::PoolOffset(a.block_table[kv::LogicalPage(pos)], kv::SlotInPage(pos), 0, 0, a.hkv, a.hd);
    k_rows[static_cast<size_t>(j)] = a.k_pool + off;
    v_rows[static_cast<size_t>(j)] = a.v_pool + off;
  }
  auto block_of = [&](int64_t pos) {
    return a.q_blocks && pos >= a.q_start ? a.q_blocks[pos - a.q_start] : -1;
  };
  // Dot products of a query with 4 keys at once: each still summed over d in order, in double,
  // exactly as one at a time (bitwise the same), but vectorised across the keys. The keys of a KV
  // head are transposed into 4-key blocks once, then used by every query and every query head of
  // its group (a prefill chunk's queries all read the same keys).
  constexpr int64_t kKeys = 4;
  const int64_t blocks = (nk + kKeys - 1) / kKeys;
  thread_local std::vector<double> kt;  // [block][d][kKeys]
  kt.resize(static_cast<size_t>(blocks * a.hd * kKeys));
  int64_t transposed_head = -1;
  for (int64_t h = 0; h < a.hq; ++h) {
    const int64_t head = (h / group) * a.hd;
    if (head != transposed_head) {
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t j0 = b * kKeys, count = std::min(kKeys, nk - j0);
        double* blk = kt.data() + b * a.hd * kKeys;
        for (int64_t r = 0; r < kKeys; ++r) {
          const float* kj = k_rows[static_cast<size_t>(j0 + std::min(r, count - 1))] + head;
          for (int64_t d = 0; d < a.hd; ++d) blk[d * kKeys + r] = kj[d];
        }
      }
      transposed_head = head;
    }
    for (int64_t i = 0; i < a.sq; ++i) {
      const int64_t qpos = a.q_start + i;
      const int32_t qb = block_of(qpos);
      const float* qi = a.q + (i * a.hq + h) * a.hd;
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t j0 = b * kKeys, count = std::min(kKeys, nk - j0);
        const double* blk = kt.data() + b * a.hd * kKeys;
        double dot[kKeys] = {};
        for (int64_t d = 0; d < a.hd; ++d) {
          const double qd = qi[d];
          for (int64_t r = 0; r < kKeys; ++r) dot[r] += qd * blk[d * kKeys + r];
        }
        for (int64_t r = 0; r < count; ++r) {
          const int64_t j = j0 + r, kpos = first + j;
          if (!kv::AttendAllowed(qpos, kpos, qb, block_of(kpos), a.sliding, a.window)) {
            p[static_cast<size_t>(j)] = -std::numeric_limits<double>::infinity();
            continue;
          }
          p[static_cast<size_t>(j)] = dot[r] * a.scale;
          if (p[static_cast<size_t>(j)] > max) max = p[static_cast<size_t>(j)];
        }
      }
      double sum = 0;
      for (int64_t j = 0; j < nk; ++j) {
        p[j] = std::isinf(p[j]) ? 0.0 : std::exp(p[j] - max);
        sum += p[j];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < nk; ++j) {
        if (p[j] == 0.0) continue;
        const float* vj = v_rows[static_cast<size_t>(j)] + head;
        for (int64_t d = 0; d < a.hd; ++d) acc[d] += p[j] * vj[d];
      }
      float* oi = a.o + (i * a.hq + h) * a.hd;
      for (int64_t d = 0; d < a.hd; ++d) oi[d] = sum > 0 ? static_cast<float>(acc[d] / sum) : 0.f;
    }
  }
}

}  // namespace vlmserve
