// Gemma 3 decoder reference (see decoder.h). Shapes for a chunk of n new positions starting at
// `start`: x [n, D]; q [n, H, hd]; k/v [n, KV, hd] written into the paged pools
// [pages, 16, KV, hd] at positions start .. start + n − 1; MLP hidden [n, I].
#include "model/reference/decoder.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/geglu.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/kv_layout.h"
#include "model/weights/tensor_names.h"
#include "model/weights/weight_convert.h"

namespace vlmserve {
namespace {

void Norm(const float* x, const std::vector<float>& w, float* y, int64_t rows, int64_t dim,
          float eps) {
  RmsNormRef({x, w.data(), y, rows, dim, eps});
}

}  // namespace

StatusOr<Gemma3Decoder> Gemma3Decoder::Load(const Checkpoint& ck, const Gemma3Config& config) {
  Gemma3Decoder d;
  d.cfg_ = config.text;
  // transformers multiplies by embed_scale cast to the weight dtype: float32 in fp32 inference.
  d.embed_scale_ = static_cast<float>(std::sqrt(static_cast<double>(d.cfg_.hidden_size)));
  ASSIGN_OR_RETURN(d.embed_, TensorToFloat(ck, tensor_names::kEmbedTokens));
  ASSIGN_OR_RETURN(d.final_norm_, TensorToFloat(ck, tensor_names::kFinalNorm));
  if (!d.cfg_.tie_word_embeddings) {
    ASSIGN_OR_RETURN(d.lm_head_, TensorToFloat(ck, tensor_names::kLmHead));
  }
  const RopeParams& rf = d.cfg_.rope_full;
  const RopeParams& rs = d.cfg_.rope_sliding;
  d.inv_freq_full_ =
      RopeInvFreq(d.cfg_.head_dim, rf.theta, rf.type == RopeType::kLinear ? rf.factor : 1.0);
  d.inv_freq_sliding_ =
      RopeInvFreq(d.cfg_.head_dim, rs.theta, rs.type == RopeType::kLinear ? rs.factor : 1.0);
  for (int64_t l = 0; l < d.cfg_.num_hidden_layers; ++l) {
    const tensor_names::DecoderLayer n = tensor_names::DecoderLayerTensors(l);
    Layer L;
    L.type = d.cfg_.layer_types[static_cast<size_t>(l)];
    ASSIGN_OR_RETURN(L.input_norm, TensorToFloat(ck, n.input_norm));
    ASSIGN_OR_RETURN(L.q, TensorToFloat(ck, n.q_proj));
    ASSIGN_OR_RETURN(L.k, TensorToFloat(ck, n.k_proj));
    ASSIGN_OR_RETURN(L.v, TensorToFloat(ck, n.v_proj));
    ASSIGN_OR_RETURN(L.o, TensorToFloat(ck, n.o_proj));
    if (d.cfg_.attention_bias) {
      ASSIGN_OR_RETURN(L.q_bias, TensorToFloat(ck, n.q_bias));
      ASSIGN_OR_RETURN(L.k_bias, TensorToFloat(ck, n.k_bias));
      ASSIGN_OR_RETURN(L.v_bias, TensorToFloat(ck, n.v_bias));
      ASSIGN_OR_RETURN(L.o_bias, TensorToFloat(ck, n.o_bias));
    }
    ASSIGN_OR_RETURN(L.q_norm, TensorToFloat(ck, n.q_norm));
    ASSIGN_OR_RETURN(L.k_norm, TensorToFloat(ck, n.k_norm));
    ASSIGN_OR_RETURN(L.post_attn_norm, TensorToFloat(ck, n.post_attn_norm));
    ASSIGN_OR_RETURN(L.pre_ff_norm, TensorToFloat(ck, n.pre_ff_norm));
    ASSIGN_OR_RETURN(L.gate, TensorToFloat(ck, n.gate_proj));
    ASSIGN_OR_RETURN(L.up, TensorToFloat(ck, n.up_proj));
    ASSIGN_OR_RETURN(L.down, TensorToFloat(ck, n.down_proj));
    ASSIGN_OR_RETURN(L.post_ff_norm, TensorToFloat(ck, n.post_ff_norm));
    d.layers_.push_back(std::move(L));
  }
  return d;
}

void Gemma3Decoder::Embed(std::span<const int32_t> ids, std::span<const uint8_t> is_soft,
                          float* out) const {
  EmbeddingArgs e;
  e.table = embed_.data();
  e.ids = ids.data();
  e.skip = is_soft.empty() ? nullptr : is_soft.data();
  e.y = out;
  e.tokens = static_cast<int64_t>(ids.size());
  e.dim = cfg_.hidden_size;
  e.scale = embed_scale_;
  EmbeddingRef(e);
}

std::vector<float> Gemma3Decoder::Forward(const LayerPools& pools, const Chunk& chunk,
                                          std::span<const float> embeddings,
                                          bool all_logits) const {
  const Chunk one[] = {chunk};
  const bool all[] = {all_logits};
  return std::move(ForwardBatch(pools, one, embeddings, all)[0]);
}

std::vector<std::vector<float>> Gemma3Decoder::ForwardBatch(
    const LayerPools& pools, std::span<const Chunk> chunks, std::span<const float> embeddings,
    std::span<const bool> all_logits) const {
  const int64_t D = cfg_.hidden_size, H = cfg_.num_attention_heads, KV = cfg_.num_key_value_heads;
  const int64_t hd = cfg_.head_dim, I = cfg_.intermediate_size, W = cfg_.sliding_window;
  const float eps = static_cast<float>(cfg_.rms_norm_eps);

  // The chunks' tokens one after the other: offsets, positions, and each chunk's image blocks
  // (maximal runs of soft tokens, spec §7.1; earlier chunks' images never matter to these
  // queries: a chunk holds whole images and earlier keys all precede them).
  std::vector<int64_t> offset(chunks.size() + 1, 0), positions;
  std::vector<int32_t> blocks;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const Chunk& ch = chunks[c];
    const int64_t n = static_cast<int64_t>(ch.token_types.size());
    offset[c + 1] = offset[c] + n;
    int32_t next_block = 0;
    for (int64_t i = 0; i < n; ++i) {
      positions.push_back(ch.start + i);
      int32_t b = -1;
      if (ch.token_types[static_cast<size_t>(i)] == 1) {
        const bool continues = i > 0 && ch.token_types[static_cast<size_t>(i - 1)] == 1;
        b = continues ? next_block - 1 : next_block++;
      }
      blocks.push_back(b);
    }
  }
  const int64_t n = offset.back();  // every token of the step: the GEMMs take them all at once

  std::vector<float> x(embeddings.begin(), embeddings.end()), a(static_cast<size_t>(n * D));
  std::vector<float> q(static_cast<size_t>(n * H * hd)), kx(static_cast<size_t>(n * KV * hd));
  std::vector<float> vx(kx.size()), o(q.size()), gate(static_cast<size_t>(n * I)), up(gate.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    const bool sliding = L.type == LayerType::kSlidingAttention;
    Norm(x.data(), L.input_norm, a.data(), n, D, eps);
    LinearRef(a.data(), L.q, L.q_bias, q.data(), n, H * hd, D);
    LinearRef(a.data(), L.k, L.k_bias, kx.data(), n, KV * hd, D);
    LinearRef(a.data(), L.v, L.v_bias, vx.data(), n, KV * hd, D);
    Norm(q.data(), L.q_norm, q.data(), n * H, hd, eps);  // per head, shared [hd] weight
    Norm(kx.data(), L.k_norm, kx.data(), n * KV, hd, eps);
    const std::vector<float>& inv = sliding ? inv_freq_sliding_ : inv_freq_full_;
    RopeRef({q.data(), positions.data(), inv.data(), n, H, hd});
    RopeRef({kx.data(), positions.data(), inv.data(), n, KV, hd});
    // Each chunk's keys and values into its pages, then its queries read every key so far.
    // Chunks (sequences) are independent: they run in parallel, each writing only its own rows
    // of o, so the split never shows in the output.
    int64_t attention_work = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      const Chunk& ch = chunks[c];
      const int64_t first = offset[c], cn = offset[c + 1] - offset[c];
      const std::span<const int32_t> table = sliding ? ch.sliding_table : ch.full_table;
      for (int64_t i = 0; i < cn; ++i) {
        const int64_t pos = ch.start + i;
        const int64_t page = table[static_cast<size_t>(kv::LogicalPage(pos))];
        const int64_t at = kv::PoolOffset(page, kv::SlotInPage(pos), 0, 0, KV, hd);
        std::copy_n(kx.data() + (first + i) * KV * hd, KV * hd, pools.k[l] + at);
        std::copy_n(vx.data() + (first + i) * KV * hd, KV * hd, pools.v[l] + at);
      }
      attention_work += cn * (ch.start + cn) * H * hd * 3;
    }
    const int64_t nchunks = static_cast<int64_t>(chunks.size());
    ParallelFor(
        nchunks, attention_work / std::max<int64_t>(1, nchunks) + 1,
        [&](int64_t c_begin, int64_t c_end) {
          for (int64_t c = c_begin; c < c_end; ++c) {
            const Chunk& ch = chunks[static_cast<size_t>(c)];
            const int64_t first = offset[c], cn = offset[c + 1] - offset[c];
            PagedAttentionRefArgs at;
            at.q = q.data() + first * H * hd;
            at.k_pool = pools.k[l];
            at.v_pool = pools.v[l];
            at.block_table = (sliding ? ch.sliding_table : ch.full_table).data();
            at.q_blocks = blocks.data() + first;
            at.o = o.data() + first * H * hd;
            at.q_start = ch.start;
            at.sq = cn;
            at.hq = H;
            at.hkv = KV;
            at.hd = hd;
            at.scale = static_cast<float>(1.0 / std::sqrt(cfg_.query_pre_attn_scalar));
            at.sliding = sliding;
            at.window = W;
            PagedAttentionRef(at);  // its own split over KV heads runs when this one is inline
          }
        });
    LinearRef(o.data(), L.o, L.o_bias, a.data(), n, D, H * hd);
    Norm(a.data(), L.post_attn_norm, a.data(), n, D, eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] += a[i];

    Norm(x.data(), L.pre_ff_norm, a.data(), n, D, eps);
    LinearRef(a.data(), L.gate, {}, gate.data(), n, I, D);
    LinearRef(a.data(), L.up, {}, up.data(), n, I, D);
    GegluRef(gate.data(), up.data(), gate.data(), n * I);
    LinearRef(gate.data(), L.down, {}, a.data(), n, D, I);
    Norm(a.data(), L.post_ff_norm, a.data(), n, D, eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] += a[i];
  }
  // Logits for each chunk's last position (or all of them), the LM head in one GEMM.
  std::vector<int64_t> rows;  // token indices that need logits
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int64_t i = all_logits[c] ? offset[c] : offset[c + 1] - 1; i < offset[c + 1]; ++i) {
      rows.push_back(i);
    }
  }
  const int64_t m = static_cast<int64_t>(rows.size());
  std::vector<float> h_in(static_cast<size_t>(m * D)), h(h_in.size()),
      logits(static_cast<size_t>(m * cfg_.vocab_size));
  for (int64_t r = 0; r < m; ++r) std::copy_n(x.data() + rows[r] * D, D, h_in.data() + r * D);
  Norm(h_in.data(), final_norm_, h.data(), m, D, eps);
  LinearRef(h.data(), lm_head_.empty() ? embed_ : lm_head_, {}, logits.data(), m, cfg_.vocab_size,
            D);
  std::vector<std::vector<float>> out(chunks.size());
  int64_t r = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const int64_t count = all_logits[c] ? offset[c + 1] - offset[c] : 1;
    out[c].assign(logits.begin() + r * cfg_.vocab_size,
                  logits.begin() + (r + count) * cfg_.vocab_size);
    r += count;
  }
  return out;
}

}  // namespace vlmserve
