// Attention reference (see attention.h). A query row whose mask allows no key produces zeros
// (never happens for Gemma 3's masks: every query sees itself).
//
// Work is split over heads (AttentionRef) or KV heads (PagedAttentionRef) with ParallelFor: each
// head's outputs are computed by one thread, in the same order as a serial run, so the bits never
// depend on the thread count.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/kv_layout.h"

namespace vlmserve {
namespace {

constexpr double kMasked = -std::numeric_limits<double>::infinity();

// Dot products of a query with 4 keys at once: each still summed over d in order, in double,
// exactly as one at a time (bitwise the same), but vectorised across the keys. A head's keys are
// transposed into 4-key blocks [block][d][4] once, then read by every query of every query head
// that shares them (a prefill chunk's queries all read the same keys).
constexpr int64_t kKeys = 4;

// key_row(j) → the hd floats of key j. The last block repeats its last key to fill the lanes.
template <typename KeyRow>
void TransposeKeys(int64_t nk, int64_t hd, const KeyRow& key_row, std::vector<double>& kt) {
  const int64_t blocks = (nk + kKeys - 1) / kKeys;
  kt.resize(static_cast<size_t>(blocks * hd * kKeys));
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j0 = b * kKeys, count = std::min(kKeys, nk - j0);
    double* blk = kt.data() + b * hd * kKeys;
    for (int64_t r = 0; r < kKeys; ++r) {
      const float* kj = key_row(j0 + std::min(r, count - 1));
      for (int64_t d = 0; d < hd; ++d) blk[d * kKeys + r] = kj[d];
    }
  }
}

void Dots(const float* qi, const double* blk, int64_t hd, double (&dot)[kKeys]) {
  for (int64_t r = 0; r < kKeys; ++r) dot[r] = 0;
  for (int64_t d = 0; d < hd; ++d) {
    const double qd = qi[d];
    for (int64_t r = 0; r < kKeys; ++r) dot[r] += qd * blk[d * kKeys + r];
  }
}

// o = softmax(p[0, n)) · V with p holding scaled scores (kMasked = not allowed) and max their
// maximum; value_row(j) → the hd floats of value j. Double accumulation, keys in order.
template <typename ValueRow>
void SoftmaxTimesValues(double* p, int64_t n, double max, const ValueRow& value_row, int64_t hd,
                        double* acc, float* o) {
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = std::isinf(p[j]) ? 0.0 : std::exp(p[j] - max);
    sum += p[j];
  }
  std::fill(acc, acc + hd, 0.0);
  for (int64_t j = 0; j < n; ++j) {
    if (p[j] == 0.0) continue;
    const float* vj = value_row(j);
    for (int64_t d = 0; d < hd; ++d) acc[d] += p[j] * vj[d];
  }
  for (int64_t d = 0; d < hd; ++d) o[d] = sum > 0 ? static_cast<float>(acc[d] / sum) : 0.f;
}

}  // namespace

void AttentionRef(const AttentionRefArgs& a) {
  const int64_t group = a.hq / a.hkv;
  ParallelFor(a.hq, a.sq * a.sk * a.hd * 3, [&a, group](int64_t h_begin, int64_t h_end) {
    thread_local std::vector<double> kt;
    std::vector<double> p(static_cast<size_t>(a.sk)), acc(static_cast<size_t>(a.hd));
    int64_t transposed = -1;
    for (int64_t h = h_begin; h < h_end; ++h) {
      const int64_t kvh = h / group;
      if (kvh != transposed) {
        TransposeKeys(
            a.sk, a.hd, [&](int64_t j) { return a.k + (j * a.hkv + kvh) * a.hd; }, kt);
        transposed = kvh;
      }
      for (int64_t i = 0; i < a.sq; ++i) {
        const float* qi = a.q + (i * a.hq + h) * a.hd;
        double max = kMasked;
        for (int64_t j0 = 0; j0 < a.sk; j0 += kKeys) {
          double dot[kKeys];
          Dots(qi, kt.data() + j0 * a.hd, a.hd, dot);
          for (int64_t j = j0; j < std::min(a.sk, j0 + kKeys); ++j) {
            if (a.mask && !a.mask[i * a.sk + j]) {
              p[static_cast<size_t>(j)] = kMasked;
              continue;
            }
            p[static_cast<size_t>(j)] = dot[j - j0] * a.scale;
            max = std::max(max, p[static_cast<size_t>(j)]);
          }
        }
        SoftmaxTimesValues(
            p.data(), a.sk, max, [&](int64_t j) { return a.v + (j * a.hkv + kvh) * a.hd; }, a.hd,
            acc.data(), a.o + (i * a.hq + h) * a.hd);
      }
    }
  });
}

void PagedAttentionRef(const PagedAttentionRefArgs& a) {
  const int64_t group = a.hq / a.hkv, total = a.q_start + a.sq;
  const int64_t first = a.sliding ? kv::FirstSlidingKey(a.q_start, a.window) : 0;
  const int64_t nk = total - first;
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
  // The keys a query may read end at itself, or at the end of its image block (kv::AttendAllowed
  // allows no later key): later keys are skipped, not masked — the same bits, since a masked
  // key's weight is exactly 0 — which halves a prefill chunk's work.
  std::vector<int64_t> key_end(static_cast<size_t>(a.sq));
  for (int64_t i = 0; i < a.sq; ++i) {
    const int64_t qpos = a.q_start + i;
    const int32_t qb = block_of(qpos);
    int64_t end = qpos + 1;
    while (qb >= 0 && end < total && block_of(end) == qb) ++end;
    key_end[static_cast<size_t>(i)] = end - first;
  }
  // One KV head (and its group of query heads) per item: its keys are transposed once.
  const int64_t cost = group * a.sq * (nk / 2 + 1) * a.hd * 3;
  ParallelFor(a.hkv, cost, [&](int64_t kv_begin, int64_t kv_end) {
    thread_local std::vector<double> kt;
    std::vector<double> p(static_cast<size_t>(nk)), acc(static_cast<size_t>(a.hd));
    for (int64_t kvh = kv_begin; kvh < kv_end; ++kvh) {
      const int64_t head = kvh * a.hd;
      TransposeKeys(
          nk, a.hd, [&](int64_t j) { return k_rows[static_cast<size_t>(j)] + head; }, kt);
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        for (int64_t i = 0; i < a.sq; ++i) {
          const int64_t qpos = a.q_start + i, n = key_end[static_cast<size_t>(i)];
          const int32_t qb = block_of(qpos);
          const float* qi = a.q + (i * a.hq + h) * a.hd;
          double max = kMasked;
          for (int64_t j0 = 0; j0 < n; j0 += kKeys) {
            double dot[kKeys];
            Dots(qi, kt.data() + j0 * a.hd, a.hd, dot);
            for (int64_t j = j0; j < std::min(n, j0 + kKeys); ++j) {
              const int64_t kpos = first + j;
              if (!kv::AttendAllowed(qpos, kpos, qb, block_of(kpos), a.sliding, a.window)) {
                p[static_cast<size_t>(j)] = kMasked;
                continue;
              }
              p[static_cast<size_t>(j)] = dot[j - j0] * a.scale;
              max = std::max(max, p[static_cast<size_t>(j)]);
            }
          }
          SoftmaxTimesValues(
              p.data(), n, max, [&](int64_t j) { return v_rows[static_cast<size_t>(j)] + head; },
              a.hd, acc.data(), a.o + (i * a.hq + h) * a.hd);
        }
      }
    }
  });
}

}  // namespace vlmserve
