// SigLIP vision tower reference (see siglip.h). Shapes per image: x [P, d], h [P, d],
// q/k/v [P, heads, head_dim] (= [P, d] row-major), MLP hidden [P, intermediate].
#include "model/reference/siglip.h"

#include <cmath>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/patch_embed.h"
#include "model/weights/tensor_names.h"
#include "model/weights/weight_convert.h"

namespace vlmserve {

StatusOr<SiglipVisionTower> SiglipVisionTower::Load(const Checkpoint& ck,
                                                    const Gemma3Config& config) {
  if (!config.has_vision) return InvalidArgumentError("a text-only model has no vision tower");
  SiglipVisionTower t;
  t.cfg_ = config.vision;
  ASSIGN_OR_RETURN(t.patch_w_, TensorToFloat(ck, tensor_names::kPatchEmbedWeight));
  ASSIGN_OR_RETURN(t.patch_b_, TensorToFloat(ck, tensor_names::kPatchEmbedBias));
  ASSIGN_OR_RETURN(t.pos_, TensorToFloat(ck, tensor_names::kPositionEmbedding));
  ASSIGN_OR_RETURN(t.post_w_, TensorToFloat(ck, tensor_names::kPostLayerNormWeight));
  ASSIGN_OR_RETURN(t.post_b_, TensorToFloat(ck, tensor_names::kPostLayerNormBias));
  for (int64_t l = 0; l < t.cfg_.num_hidden_layers; ++l) {
    const tensor_names::VisionLayer n = tensor_names::VisionLayerTensors(l);
    Layer L;
    ASSIGN_OR_RETURN(L.ln1_w, TensorToFloat(ck, n.ln1_weight));
    ASSIGN_OR_RETURN(L.ln1_b, TensorToFloat(ck, n.ln1_bias));
    ASSIGN_OR_RETURN(L.q_w, TensorToFloat(ck, n.q_weight));
    ASSIGN_OR_RETURN(L.q_b, TensorToFloat(ck, n.q_bias));
    ASSIGN_OR_RETURN(L.k_w, TensorToFloat(ck, n.k_weight));
    ASSIGN_OR_RETURN(L.k_b, TensorToFloat(ck, n.k_bias));
    ASSIGN_OR_RETURN(L.v_w, TensorToFloat(ck, n.v_weight));
    ASSIGN_OR_RETURN(L.v_b, TensorToFloat(ck, n.v_bias));
    ASSIGN_OR_RETURN(L.o_w, TensorToFloat(ck, n.out_weight));
    ASSIGN_OR_RETURN(L.o_b, TensorToFloat(ck, n.out_bias));
    ASSIGN_OR_RETURN(L.ln2_w, TensorToFloat(ck, n.ln2_weight));
    ASSIGN_OR_RETURN(L.ln2_b, TensorToFloat(ck, n.ln2_bias));
    ASSIGN_OR_RETURN(L.fc1_w, TensorToFloat(ck, n.fc1_weight));
    ASSIGN_OR_RETURN(L.fc1_b, TensorToFloat(ck, n.fc1_bias));
    ASSIGN_OR_RETURN(L.fc2_w, TensorToFloat(ck, n.fc2_weight));
    ASSIGN_OR_RETURN(L.fc2_b, TensorToFloat(ck, n.fc2_bias));
    t.layers_.push_back(std::move(L));
  }
  return t;
}

void SiglipVisionTower::ForwardOne(const float* pixels, float* x) const {
  const int64_t d = cfg_.hidden_size, inter = cfg_.intermediate_size, P = cfg_.num_patches();
  const int64_t heads = cfg_.num_attention_heads, hd = cfg_.head_dim();
  const float eps = static_cast<float>(cfg_.layer_norm_eps);

  // 1-2. Patch embedding and learned positions (spec §4).
  PatchEmbedArgs pe;
  pe.pixels = pixels;
  pe.w = patch_w_.data();
  pe.b = patch_b_.data();
  pe.y = x;
  pe.n = 1;
  pe.c = cfg_.num_channels;
  pe.s = cfg_.image_size;
  pe.p = cfg_.patch_size;
  pe.d = d;
  PatchEmbedRef(pe);
  for (int64_t i = 0; i < P * d; ++i) x[i] += pos_[static_cast<size_t>(i)];

  // 3. Pre-LN encoder layers.
  std::vector<float> h(P * d), q(P * d), k(P * d), v(P * d), o(P * d), mlp(P * inter);
  for (const Layer& L : layers_) {
    LayerNormRef({x, L.ln1_w.data(), L.ln1_b.data(), h.data(), P, d, eps});
    LinearRef(h.data(), L.q_w, L.q_b, q.data(), P, d, d);
    LinearRef(h.data(), L.k_w, L.k_b, k.data(), P, d, d);
    LinearRef(h.data(), L.v_w, L.v_b, v.data(), P, d, d);
    AttentionRefArgs at;
    at.q = q.data();
    at.k = k.data();
    at.v = v.data();
    at.o = o.data();
    at.sq = at.sk = P;
    at.hq = at.hkv = heads;
    at.hd = hd;
    at.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));  // no mask: full
    AttentionRef(at);
    LinearRef(o.data(), L.o_w, L.o_b, h.data(), P, d, d);
    for (int64_t i = 0; i < P * d; ++i) x[i] += h[i];
    LayerNormRef({x, L.ln2_w.data(), L.ln2_b.data(), h.data(), P, d, eps});
    LinearRef(h.data(), L.fc1_w, L.fc1_b, mlp.data(), P, inter, d);
    GeluTanhRef(mlp.data(), mlp.data(), P * inter);
    LinearRef(mlp.data(), L.fc2_w, L.fc2_b, h.data(), P, d, inter);
    for (int64_t i = 0; i < P * d; ++i) x[i] += h[i];
  }
  // 4. post_layernorm.
  LayerNormRef({x, post_w_.data(), post_b_.data(), x, P, d, eps});
}

StatusOr<std::vector<float>> SiglipVisionTower::Forward(std::span<const float> pixel_values,
                                                        int64_t n) const {
  const size_t per_image =
      static_cast<size_t>(cfg_.num_channels) * cfg_.image_size * cfg_.image_size;
  if (n < 0 || pixel_values.size() != per_image * static_cast<size_t>(n)) {
    return InvalidArgumentError("pixel_values has " + std::to_string(pixel_values.size()) +
                                " values; " + std::to_string(n) + " images of 3x" +
                                std::to_string(cfg_.image_size) + "x" +
                                std::to_string(cfg_.image_size) + " need " +
                                std::to_string(per_image * static_cast<size_t>(n)));
  }
  const size_t per_out = static_cast<size_t>(cfg_.num_patches()) * cfg_.hidden_size;
  std::vector<float> out(per_out * static_cast<size_t>(n));
  // Images are independent: a batch runs them in parallel (each one's own ops then run inline);
  // a single image splits its GEMMs and heads instead.
  const int64_t P = cfg_.num_patches(), d = cfg_.hidden_size;
  const int64_t per_image_work = P * (4 * d * d + 2 * d * cfg_.intermediate_size + 3 * P * d) *
                                 static_cast<int64_t>(layers_.size());
  ParallelFor(n, per_image_work, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      ForwardOne(pixel_values.data() + per_image * i, out.data() + per_out * i);
  });
  return out;
}

}  // namespace vlmserve
