#!/usr/bin/env python3
"""Vision-tower and projector goldens for tests/unit/vision_test.cc, made by transformers
(tools/requirements.txt) in fp32 with attn_implementation="eager".

For each tiny config, writes tests/fixtures/vision/<name>/:
  config.json, model.safetensors   a Gemma3ForConditionalGeneration whose parameters are ALL
                                   re-randomised after construction (transformers initialises norm
                                   weights and biases to constants, which would hide a swapped norm
                                   or a missing bias)
  goldens.safetensors              pixel_values [N, 3, S, S], vision_output [N, P, d] and
                                   projector_output [N, T, D], captured with forward hooks on the
                                   vision tower and the projector during get_image_features
  versions.json
The configs exercise the pooling kernel (2 and 4, and a 6x6 patch grid pooled to 3x3), attention
with 2-3 heads, several images in one batch.

Run from the repository root:  python3 tools/golden/make_vision_goldens.py
"""
import json
import os
import shutil

import safetensors
import torch
import transformers
from safetensors.torch import save_file
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

OUT = os.path.join("tests", "fixtures", "vision")
TEXT = dict(vocab_size=256, hidden_size=40, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
            max_position_embeddings=256)

CASES = {
    # 4x4 patches pooled 2x2 → 4 tokens; 2 images
    "pool2": dict(vision=dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                              num_attention_heads=3, image_size=28, patch_size=7), mm=4, images=2, seed=1),
    # 8x8 patches pooled 4x4 → 4 tokens; 3 images
    "pool4": dict(vision=dict(hidden_size=32, intermediate_size=56, num_hidden_layers=3,
                              num_attention_heads=2, image_size=56, patch_size=7), mm=4, images=3, seed=2),
    # 6x6 patches pooled 2x2 → 9 tokens; patch 5; 1 image
    "grid6": dict(vision=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                              num_attention_heads=2, image_size=30, patch_size=5), mm=9, images=1, seed=3),
}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p.shape[-1] if p.dim() >= 2 else 1
            if "patch_embedding.weight" in name:
                fan_in = p[0].numel()
            std = 0.5 / fan_in ** 0.5 if p.dim() >= 2 else 0.5
            p.copy_(torch.randn(p.shape, generator=g) * std)
            if p.dim() == 1 and ("layer_norm" in name or "post_layernorm" in name) and name.endswith("weight"):
                p.add_(1.0)  # LayerNorm weights around 1 (still random), so activations stay O(1)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, c in CASES.items():
        torch.manual_seed(c["seed"])
        vision = dict(c["vision"], vision_use_head=False)
        cfg = Gemma3Config(text_config=dict(TEXT), vision_config=vision, mm_tokens_per_image=c["mm"])
        cfg._attn_implementation = "eager"
        model = Gemma3ForConditionalGeneration(cfg).to(torch.float32).eval()
        model.config._attn_implementation = "eager"
        for sub in (model.model.vision_tower, model.model.language_model):
            sub.config._attn_implementation = "eager"
        randomize(model, c["seed"])
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d)
        if os.path.exists(os.path.join(d, "generation_config.json")):
            os.remove(os.path.join(d, "generation_config.json"))

        size = c["vision"]["image_size"]
        g = torch.Generator().manual_seed(100 + c["seed"])
        pixel_values = torch.rand((c["images"], 3, size, size), generator=g) * 2 - 1
        captured = {}
        h1 = model.model.vision_tower.register_forward_hook(
            lambda m, i, o: captured.__setitem__("vision", o.last_hidden_state.detach().clone()))
        h2 = model.model.multi_modal_projector.register_forward_hook(
            lambda m, i, o: captured.__setitem__("projector", o.detach().clone()))
        with torch.no_grad():
            model.model.get_image_features(pixel_values=pixel_values)
        h1.remove()
        h2.remove()
        save_file({"pixel_values": pixel_values.contiguous(),
                   "vision_output": captured["vision"].contiguous(),
                   "projector_output": captured["projector"].contiguous()},
                  os.path.join(d, "goldens.safetensors"))
        with open(os.path.join(d, "versions.json"), "w") as f:
            json.dump({"script": "tools/golden/make_vision_goldens.py", "transformers": transformers.__version__,
                       "torch": torch.__version__, "safetensors": safetensors.__version__,
                       "attn_implementation": model.model.vision_tower.config._attn_implementation,
                       "vision_output": list(captured["vision"].shape),
                       "projector_output": list(captured["projector"].shape)}, f, indent=1)
        print(name, list(captured["vision"].shape), list(captured["projector"].shape),
              float(captured["projector"].abs().max()))


if __name__ == "__main__":
    main()
