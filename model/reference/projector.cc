// Multi-modal projector reference (see projector.h).
#include "model/reference/projector.h"

#include "kernels/cpu/avg_pool.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/rms_norm.h"
#include "model/weights/tensor_names.h"
#include "model/weights/weight_convert.h"

namespace vlmserve {

StatusOr<MultiModalProjector> MultiModalProjector::Load(const Checkpoint& ck,
                                                        const Gemma3Config& c) {
  if (!c.has_vision) return InvalidArgumentError("a text-only model has no projector");
  const Weight* norm = ck.Find(tensor_names::kProjectorNorm);
  const Weight* proj = ck.Find(tensor_names::kProjectorWeight);
  if (!norm || !proj) return InternalError("checkpoint lacks projector tensors although validated");
  MultiModalProjector p;
  p.side_ = c.vision.patches_per_side();
  p.kernel_ = c.pool_kernel();
  p.d_ = c.vision.hidden_size;
  p.out_dim_ = c.text.hidden_size;
  p.tokens_ = c.mm_tokens_per_image;
  p.eps_ = static_cast<float>(c.vision.layer_norm_eps);  // spec §5: the vision eps
  p.norm_w_ = WeightToFloat(*norm);
  p.proj_w_ = WeightToFloat(*proj);
  return p;
}

StatusOr<std::vector<float>> MultiModalProjector::Forward(std::span<const float> v,
                                                          int64_t n) const {
  const size_t per_image = static_cast<size_t>(side_ * side_ * d_);
  if (n < 0 || v.size() != per_image * static_cast<size_t>(n)) {
    return InvalidArgumentError("projector input has " + std::to_string(v.size()) +
                                " values, expected " + std::to_string(per_image * n));
  }
  std::vector<float> pooled(static_cast<size_t>(n * tokens_ * d_));
  AvgPoolPatchesRef({v.data(), pooled.data(), n, side_, kernel_, d_});
  RmsNormRef({pooled.data(), norm_w_.data(), pooled.data(), n * tokens_, d_, eps_});
  std::vector<float> out(static_cast<size_t>(n * tokens_ * out_dim_));
  GemmRefArgs g;
  g.x = pooled.data();
  g.w = proj_w_.data();
  g.y = out.data();
  g.m = n * tokens_;
  g.n = out_dim_;
  g.k = d_;
  g.w_input_major = true;  // [d, D], used as x · W — never transposed (spec §5, §11.10)
  GemmRef(g);
  return out;
}

}  // namespace vlmserve
