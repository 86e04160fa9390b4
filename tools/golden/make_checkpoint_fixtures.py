#!/usr/bin/env python3
"""Tiny Gemma 3 checkpoints for tests/unit/checkpoint_test.cc, made by transformers + safetensors
(tools/requirements.txt), in every layout and naming convention the loader accepts.

Writes tests/fixtures/checkpoints/<name>/ (config.json + weights) and <name>.expected.json:
the dtype, the tensor names as stored, and, from transformers' own model object, parameters per
component plus, per tensor, the float64 sum and the first value (so the test can check that every
tensor's bytes are found at the right offset).

Run from the repository root:  python3 tools/golden/make_checkpoint_fixtures.py
"""
import json
import os
import shutil
import tempfile

import safetensors
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (Gemma3Config, Gemma3ForCausalLM, Gemma3ForConditionalGeneration,
                          Gemma3TextConfig)

OUT = os.path.join("tests", "fixtures", "checkpoints")
TEXT = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
            max_position_embeddings=512)
VISION = dict(hidden_size=24, intermediate_size=40, num_hidden_layers=1, num_attention_heads=2,
              image_size=28, patch_size=7)


def multimodal(use_head=False):
    vision = dict(VISION)
    if not use_head:
        vision["vision_use_head"] = False
    return Gemma3Config(text_config=dict(TEXT), vision_config=vision, mm_tokens_per_image=4)


def randomize(model, seed):
    """Every parameter random (transformers initialises norms to constants)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def rename_file(path, fn):
    """Rewrite a safetensors file with renamed keys (same data), using the safetensors library."""
    tensors = {}
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        for k in f.keys():
            tensors[fn(k)] = f.get_tensor(k)
    save_file(tensors, path, metadata=meta)


def add_tensor(path, name, tensor):
    tensors = {}
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    tensors[name] = tensor.contiguous()
    save_file(tensors, path, metadata=meta)


def component_counts(model, text_only):
    count = lambda m: sum(p.numel() for p in m.parameters())
    if text_only:
        lm = model.model
        out = {"language_model": count(lm)}
    else:
        lm = model.model.language_model
        out = {"language_model": count(lm), "vision_tower": count(model.model.vision_tower),
               "projector": count(model.model.multi_modal_projector)}
    tied = model.lm_head.weight is lm.embed_tokens.weight
    out["lm_head"] = 0 if tied else model.lm_head.weight.numel()
    out["total"] = count(model)
    return out


def describe(dirname, model, text_only, dtype_name):
    tensors = {}
    files = sorted(f for f in os.listdir(dirname) if f.endswith(".safetensors"))
    for fn in files:
        with safe_open(os.path.join(dirname, fn), "pt") as f:
            for k in f.keys():
                t = f.get_tensor(k).to(torch.float64)
                tensors[k] = {"file": fn, "shape": list(t.shape), "sum": t.sum().item(),
                              "first": t.flatten()[0].item()}
    return {"dtype": dtype_name, "files": files, "params": component_counts(model, text_only),
            "tensors": tensors}


def save(name, model, dtype, text_only=False, **save_kw):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model = model.to(dtype)
    model.save_pretrained(d, **save_kw)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(d, extra)):
            os.remove(os.path.join(d, extra))
    return d, model


def main():
    os.makedirs(OUT, exist_ok=True)
    versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                "safetensors": safetensors.__version__}
    cases = {}

    # 1. transformers 5.17's default save: hub LM names, vision_tower.* (no vision_model level).
    m = randomize(Gemma3ForConditionalGeneration(multimodal()), 1)
    d, m = save("v5-default-bf16", m, torch.bfloat16)
    cases["v5-default-bf16"] = describe(d, m, False, "BF16")

    # 2. Runtime names (save_original_format=False), fp32.
    m = randomize(Gemma3ForConditionalGeneration(multimodal()), 2)
    d, m = save("runtime-f32", m, torch.float32, save_original_format=False)
    cases["runtime-f32"] = describe(d, m, False, "F32")

    # 3. Sharded with an index, fp16.
    m = randomize(Gemma3ForConditionalGeneration(multimodal()), 3)
    d, m = save("sharded-f16", m, torch.float16, max_shard_size="20KB")
    cases["sharded-f16"] = describe(d, m, False, "F16")

    # 4. The published hub convention (vision_tower.vision_model.*) with an explicit tied
    #    language_model.lm_head.weight equal to the embedding, as some exporters write it.
    m = randomize(Gemma3ForConditionalGeneration(multimodal()), 4)
    d, m = save("hub-tied-head-bf16", m, torch.bfloat16)
    path = os.path.join(d, "model.safetensors")
    rename_file(path, lambda k: k.replace("vision_tower.", "vision_tower.vision_model.", 1)
                if k.startswith("vision_tower.") else k)
    add_tensor(path, "language_model.lm_head.weight",
               m.model.language_model.embed_tokens.weight.detach().clone())
    cases["hub-tied-head-bf16"] = describe(d, m, False, "BF16")

    # 5. SigLIP pooling head present (config without vision_use_head).
    m = randomize(Gemma3ForConditionalGeneration(multimodal(use_head=True)), 5)
    d, m = save("with-head-bf16", m, torch.bfloat16)
    cases["with-head-bf16"] = describe(d, m, False, "BF16")

    # 6. Text-only Gemma3ForCausalLM, untied head, attention biases.
    tc = Gemma3TextConfig(**TEXT, tie_word_embeddings=False, attention_bias=True)
    m = randomize(Gemma3ForCausalLM(tc), 6)
    d, m = save("text-untied-bf16", m, torch.bfloat16)
    cases["text-untied-bf16"] = describe(d, m, True, "BF16")

    for name, exp in cases.items():
        exp["made_by"] = {"script": "tools/golden/make_checkpoint_fixtures.py", **versions}
        with open(os.path.join(OUT, name + ".expected.json"), "w") as f:
            json.dump(exp, f, indent=1, sort_keys=True)
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(OUT, name, f)) for f in os.listdir(os.path.join(OUT, name)))
        print(f"{name}: {len(exp['tensors'])} tensors, {exp['params']['total']:,} parameters, {size:,} bytes")


if __name__ == "__main__":
    main()
