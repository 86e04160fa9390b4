// Per-layer tensor names (see tensor_names.h).
#include "model/weights/tensor_names.h"

namespace vlmserve::tensor_names {

DecoderLayer DecoderLayerTensors(int64_t layer) {
  const std::string p = "lm.layers." + std::to_string(layer) + ".";
  DecoderLayer n;
  n.input_norm = p + "input_layernorm.weight";
  n.q_proj = p + "self_attn.q_proj.weight";
  n.k_proj = p + "self_attn.k_proj.weight";
  n.v_proj = p + "self_attn.v_proj.weight";
  n.o_proj = p + "self_attn.o_proj.weight";
  n.q_bias = p + "self_attn.q_proj.bias";
  n.k_bias = p + "self_attn.k_proj.bias";
  n.v_bias = p + "self_attn.v_proj.bias";
  n.o_bias = p + "self_attn.o_proj.bias";
  n.q_norm = p + "self_attn.q_norm.weight";
  n.k_norm = p + "self_attn.k_norm.weight";
  n.post_attn_norm = p + "post_attention_layernorm.weight";
  n.pre_ff_norm = p + "pre_feedforward_layernorm.weight";
  n.post_ff_norm = p + "post_feedforward_layernorm.weight";
  n.gate_proj = p + "mlp.gate_proj.weight";
  n.up_proj = p + "mlp.up_proj.weight";
  n.down_proj = p + "mlp.down_proj.weight";
  return n;
}

VisionLayer VisionLayerTensors(int64_t layer) {
  const std::string p = "vision.encoder.layers." + std::to_string(layer) + ".";
  VisionLayer n;
  n.ln1_weight = p + "layer_norm1.weight";
  n.ln1_bias = p + "layer_norm1.bias";
  n.q_weight = p + "self_attn.q_proj.weight";
  n.q_bias = p + "self_attn.q_proj.bias";
  n.k_weight = p + "self_attn.k_proj.weight";
  n.k_bias = p + "self_attn.k_proj.bias";
  n.v_weight = p + "self_attn.v_proj.weight";
  n.v_bias = p + "self_attn.v_proj.bias";
  n.out_weight = p + "self_attn.out_proj.weight";
  n.out_bias = p + "self_attn.out_proj.bias";
  n.ln2_weight = p + "layer_norm2.weight";
  n.ln2_bias = p + "layer_norm2.bias";
  n.fc1_weight = p + "mlp.fc1.weight";
  n.fc1_bias = p + "mlp.fc1.bias";
  n.fc2_weight = p + "mlp.fc2.weight";
  n.fc2_bias = p + "mlp.fc2.bias";
  return n;
}

}  // namespace vlmserve::tensor_names
