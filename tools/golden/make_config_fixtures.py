#!/usr/bin/env python3
"""Golden config fixtures for tests/unit/config_test.cc, made by transformers (tools/requirements.txt).

For each case it writes tests/fixtures/configs/<name>.json (the config.json as a checkpoint would
carry it) and <name>.expected.json: what transformers resolves from it (defaults filled in, layer
types, RoPE per layer type) and the parameter counts of the model transformers builds from it,
per component (models are built on the meta device, so the 27B case costs no memory).

Run from the repository root:  python3 tools/golden/make_config_fixtures.py [--shared ../shared]
"""
import argparse
import json
import os
import tempfile

import torch
import transformers
from transformers import (Gemma3Config, Gemma3ForCausalLM, Gemma3ForConditionalGeneration,
                          Gemma3TextConfig)

OUT = os.path.join("tests", "fixtures", "configs")


def tiny_text(**kw):
    d = dict(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=16,
             max_position_embeddings=2048)
    d.update(kw)
    return d


def tiny_vision(**kw):
    d = dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=3,
             image_size=56, patch_size=7)
    d.update(kw)
    return d


def saved_by_transformers(cfg):
    """The config.json that save_pretrained writes for `cfg` (the sparse, diff-to-defaults form)."""
    with tempfile.TemporaryDirectory() as d:
        cfg.save_pretrained(d)
        with open(os.path.join(d, "config.json")) as f:
            return json.load(f)


def cases(shared):
    out = {}
    with open(os.path.join(shared, "gemma3", "config-4b-it.json")) as f:
        out["gemma3-4b-it"] = json.load(f)  # the published file, sparse, v4.50 era

    # v5 save of a tiny multimodal model: rope_parameters + layer_types form.
    out["tiny-v5-saved"] = saved_by_transformers(Gemma3Config(
        text_config=tiny_text(rope_scaling={"rope_type": "linear", "factor": 8.0},
                              rope_local_base_freq=10000.0, query_pre_attn_scalar=24),
        vision_config=dict(tiny_vision(), vision_use_head=False), mm_tokens_per_image=4))

    # Hand-written v4.5x-style config: sliding_window_pattern, rope_scaling with "type", no
    # vision_use_head (transformers then builds the SigLIP pooling head), int-valued floats.
    out["tiny-v4-style"] = {
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "mm_tokens_per_image": 16, "eos_token_id": [1, 106],
        "text_config": dict(tiny_text(num_hidden_layers=7, num_key_value_heads=1),
                            model_type="gemma3_text", sliding_window_pattern=3,
                            rope_theta=500000, rope_local_base_freq=20000,
                            rope_scaling={"type": "linear", "factor": 4}),
        "vision_config": dict(tiny_vision(image_size=112), model_type="siglip_vision_model"),
    }

    # Text-only, untied LM head, attention biases, explicit irregular layer_types, 27B-like scalar.
    out["tiny-text-untied"] = {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        **tiny_text(num_hidden_layers=5, tie_word_embeddings=False, attention_bias=True,
                    query_pre_attn_scalar=168,
                    layer_types=["full_attention", "sliding_attention", "sliding_attention",
                                 "full_attention", "sliding_attention"]),
    }

    # The published sizes of the other family members (spec §1.3), in the sparse form.
    def mm(text, **top):
        return {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                "eos_token_id": [1, 106], "mm_tokens_per_image": 256, **top,
                "text_config": dict(text, model_type="gemma3_text",
                                    rope_scaling={"factor": 8.0, "rope_type": "linear"}),
                "vision_config": {"hidden_size": 1152, "image_size": 896,
                                  "intermediate_size": 4304, "model_type": "siglip_vision_model",
                                  "num_attention_heads": 16, "num_hidden_layers": 27,
                                  "patch_size": 14, "vision_use_head": False}}
    out["gemma3-12b"] = mm(dict(hidden_size=3840, intermediate_size=15360, num_hidden_layers=48,
                                num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                                query_pre_attn_scalar=256, sliding_window=1024))
    out["gemma3-27b"] = mm(dict(hidden_size=5376, intermediate_size=21504, num_hidden_layers=62,
                                num_attention_heads=32, num_key_value_heads=16, head_dim=128,
                                query_pre_attn_scalar=168, sliding_window=1024))
    out["gemma3-1b-text"] = {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "vocab_size": 262144, "hidden_size": 1152, "intermediate_size": 6912,
        "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 512,
        "sliding_window_pattern": 6, "max_position_embeddings": 32768, "rope_scaling": None,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "eos_token_id": [1, 106],
    }
    return out


def rope(p):
    return {"rope_type": p.get("rope_type", p.get("type", "default")),
            "rope_theta": float(p["rope_theta"]), "factor": float(p.get("factor", 1.0))}


def nparams(module):
    return sum(p.numel() for p in module.parameters())


def expected(cfg_dict):
    text_only = cfg_dict.get("model_type") == "gemma3_text"
    if text_only:
        cfg = Gemma3TextConfig.from_dict(cfg_dict)
        with torch.device("meta"):
            model = Gemma3ForCausalLM(cfg)
        tc, lm, tied = cfg, model.model, cfg.tie_word_embeddings
    else:
        cfg = Gemma3Config.from_dict(cfg_dict)
        with torch.device("meta"):
            model = Gemma3ForConditionalGeneration(cfg)
        tc, lm, tied = cfg.text_config, model.model.language_model, cfg.tie_word_embeddings
    is_tied = model.lm_head.weight is lm.embed_tokens.weight
    assert is_tied == bool(tied), (is_tied, tied)
    e = {
        "text_only": text_only,
        "text": {k: getattr(tc, k) for k in [
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "query_pre_attn_scalar",
            "rms_norm_eps", "sliding_window", "max_position_embeddings", "layer_types",
            "attention_bias", "hidden_activation"]},
        "tie_word_embeddings": is_tied,
        "params": {"language_model": nparams(lm),
                   "lm_head": 0 if is_tied else model.lm_head.weight.numel(),
                   "total": nparams(model)},
    }
    e["text"]["rope_full"] = rope(tc.rope_parameters["full_attention"])
    e["text"]["rope_sliding"] = rope(tc.rope_parameters["sliding_attention"])
    if not text_only:
        vc, vt = cfg.vision_config, model.model.vision_tower
        e["vision"] = {k: getattr(vc, k) for k in [
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_channels", "image_size", "patch_size", "layer_norm_eps", "hidden_act"]}
        e["vision"]["use_head"] = bool(getattr(vt, "vision_model", vt).use_head)
        e["mm_tokens_per_image"] = cfg.mm_tokens_per_image
        e["params"]["vision_tower"] = nparams(vt)
        e["params"]["projector"] = nparams(model.model.multi_modal_projector)
    return e


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join("..", "shared"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    versions = {"transformers": transformers.__version__, "torch": torch.__version__}
    for name, cfg in cases(args.shared).items():
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        exp = expected(cfg)
        exp["made_by"] = {"script": "tools/golden/make_config_fixtures.py", **versions}
        with open(os.path.join(OUT, name + ".expected.json"), "w") as f:
            json.dump(exp, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"{name}: total {exp['params']['total']:,} parameters")


if __name__ == "__main__":
    main()
