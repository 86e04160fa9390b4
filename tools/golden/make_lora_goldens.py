#!/usr/bin/env python3
"""LoRA adapter goldens for tests/unit/lora_test.cc, made by transformers + PEFT
(tools/requirements.txt) in fp32 with attn_implementation="eager".

Each case takes a base from tests/fixtures/decoder/ (made by make_decoder_goldens.py), wraps it with
peft.get_peft_model(LoraConfig(...)), draws every lora_A and lora_B (and modules_to_save copy) at
random — non-zero B, so the adapter changes the answer — saves the adapter with save_pretrained, then
runs PeftModel.merge_and_unload() on the base's golden prompt (its input_ids, token_type_ids and
pixel_values). Adapters trained under older transformers name modules differently; the files of
some cases are renamed to those eras (4.50–4.51: language_model.model.* / vision_tower.vision_model.*,
4.52–4.57: model.vision_tower.vision_model.*), which changes names only, never values.

Writes tests/fixtures/lora/<case>/: adapter_config.json, adapter_model.safetensors (as PEFT saved
them, renamed where said), goldens.safetensors (prompt_logits [S, V] of the merged model) and
goldens.json (base, era, 16 greedy tokens of the merged model with their top-2 margins, the base's
greedy tokens for contrast, versions).

Run from the repository root:  python3 tools/golden/make_lora_goldens.py
"""
import json
import os
import shutil

import peft
import safetensors
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import Gemma3ForConditionalGeneration

from make_decoder_goldens import run_greedy  # same directory

BASES = os.path.join("tests", "fixtures", "decoder")
OUT = os.path.join("tests", "fixtures", "lora")

CASES = {
    # A list of short names hits the vision tower's q/k/v_proj too (PEFT matches name endings).
    "attention_r8_era450": dict(
        base="gqa2_two_images", era="4.50", seed=31,
        lora=dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])),
    "mlp_r1_rslora": dict(
        base="gqa2_two_images", era="5", seed=32,
        lora=dict(r=1, lora_alpha=4, use_rslora=True, target_modules=["gate_proj", "up_proj", "down_proj"])),
    "all_linear_patterns_rslora": dict(
        base="gqa2_two_images", era="5", seed=33,
        lora=dict(r=8, lora_alpha=8, use_rslora=True, target_modules="all-linear",
                  rank_pattern={"down_proj": 4, "fc1": 2}, alpha_pattern={"o_proj": 32, "out_proj": 3})),
    "vision_language_regex_era452": dict(
        base="gqa4_pan_scan_runtime_names", era="4.52", seed=34,
        lora=dict(r=8, lora_alpha=16,
                  target_modules=r".*vision_tower.*\.(fc1|fc2|out_proj)|.*language_model\.layers\.[02]\.self_attn\.(q_proj|v_proj)")),
    "layers_save_projector_era450": dict(
        base="gqa4_pan_scan_runtime_names", era="4.50", seed=35,
        lora=dict(r=1, lora_alpha=2, target_modules=["q_proj", "down_proj"], layers_to_transform=[1, 2],
                  modules_to_save=["multi_modal_projector"])),
}


def era_name(key, era):
    """A transformers-5 module path in an older era's naming (adapter keys and config regexes)."""
    if era == "4.50":
        for new, old in (("model.language_model.", "language_model.model."),
                         ("model.vision_tower.", "vision_tower.vision_model."),
                         ("model.multi_modal_projector.", "multi_modal_projector.")):
            key = key.replace("base_model.model." + new, "base_model.model." + old)
    elif era == "4.52":
        key = key.replace("base_model.model.model.vision_tower.", "base_model.model.model.vision_tower.vision_model.")
    return key


def token_types(golden):
    tt = [0] * len(golden["input_ids"])
    for start, n in golden["image_runs"]:
        for i in range(start, start + n):
            tt[i] = 1
    return torch.tensor([tt])


def text_only_case():
    """A Gemma3ForCausalLM base (tests/fixtures/checkpoints/text-untied-bf16: bf16, untied LM head,
    attention biases): an adapter on q/v_proj and the untied lm_head, r 4, saved by PEFT; the
    golden is the merged weights computed in fp32 from the saved tensors (PEFT itself merges a
    bf16 base in bf16, rounding twice, which is not what a runner with fp32 weights wants)."""
    from transformers import Gemma3ForCausalLM
    base_dir = os.path.join("tests", "fixtures", "checkpoints", "text-untied-bf16")
    model = Gemma3ForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    lora = dict(r=4, lora_alpha=6, target_modules=["q_proj", "v_proj", "lm_head"])
    pm = get_peft_model(model, LoraConfig(**lora))
    g = torch.Generator().manual_seed(36)
    with torch.no_grad():
        for pname, p in pm.named_parameters():
            if "lora_A" in pname or "lora_B" in pname:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    d = os.path.join(OUT, "text_only_untied_head")
    shutil.rmtree(d, ignore_errors=True)
    pm.save_pretrained(d)
    cfg_path = os.path.join(d, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg["base_model_name_or_path"] = base_dir
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    saved = load_file(os.path.join(d, "adapter_model.safetensors"))
    base = load_file(os.path.join(base_dir, "model.safetensors"))
    merged = {}
    for k in saved:
        if not k.endswith(".lora_A.weight"):
            continue
        module = k[len("base_model.model."):-len(".lora_A.weight")]
        A, B = saved[k].float(), saved[k.replace("lora_A", "lora_B")].float()
        merged[module + ".weight"] = (base[module + ".weight"].float() + (B @ A) * (6 / 4)).contiguous()
    save_file(merged, os.path.join(d, "goldens.safetensors"))
    with open(os.path.join(d, "goldens.json"), "w") as f:
        json.dump({"base": base_dir, "era": "Gemma3ForCausalLM", "lora": lora, "lora_tensors": len(saved),
                   "merged": sorted(merged),
                   "made_by": {"script": "tools/golden/make_lora_goldens.py", "peft": peft.__version__,
                               "transformers": transformers.__version__, "torch": torch.__version__}},
                  f, indent=1)
    print("text_only_untied_head", len(saved), "tensors,", len(merged), "merged weights")


def main():
    os.makedirs(OUT, exist_ok=True)
    text_only_case()
    for name, c in CASES.items():
        base_dir = os.path.join(BASES, c["base"])
        with open(os.path.join(base_dir, "goldens.json")) as f:
            base_golden = json.load(f)
        inputs = load_file(os.path.join(base_dir, "goldens.safetensors"))
        input_ids = torch.tensor([base_golden["input_ids"]])
        tt = token_types(base_golden)
        pixel_values = inputs["pixel_values"]

        model = Gemma3ForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32).eval()
        for sub in (model, model.model.vision_tower, model.model.language_model):
            sub.config._attn_implementation = "eager"
        pm = get_peft_model(model, LoraConfig(**c["lora"]))
        initial = {k: v.clone() for k, v in pm.state_dict().items()}
        # Draw the adapter; redraw (seed + 1000 k) until every greedy step has a clear top-2 margin
        # and the answer differs from the base's, so the test can tell right from wrong merges.
        for attempt in range(20):
            seed = c["seed"] + 1000 * attempt
            pm.load_state_dict(initial)
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for pname, p in pm.named_parameters():
                    if "lora_A" in pname or "lora_B" in pname:
                        # A ~ kaiming-like, B large enough that the adapter changes the answer.
                        std = (1.0 / p.shape[1] ** 0.5) if "lora_A" in pname else 0.5
                        p.copy_(torch.randn(p.shape, generator=g) * std)
                    elif "modules_to_save" in pname:
                        p.add_(torch.randn(p.shape, generator=g) * 0.3 * p.abs().mean())
            d = os.path.join(OUT, name)
            shutil.rmtree(d, ignore_errors=True)
            pm.save_pretrained(d)
            merged_state = {k: v.clone() for k, v in pm.state_dict().items()}
            merged = pm.merge_and_unload()
            prompt_logits, greedy, margins = run_greedy(merged, input_ids, pixel_values, tt)
            if min(margins) > 1e-3 and greedy != base_golden["greedy_tokens"]:
                break
            pm = get_peft_model(Gemma3ForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32).eval(),
                                LoraConfig(**c["lora"]))
            for sub in (pm.base_model.model, pm.base_model.model.model.vision_tower,
                        pm.base_model.model.model.language_model):
                sub.config._attn_implementation = "eager"
        else:
            raise SystemExit(f"{name}: no seed gave clear greedy margins")
        del merged_state

        # Older eras: rename the file's keys (values untouched) and any module paths in the config.
        path = os.path.join(d, "adapter_model.safetensors")
        tensors = load_file(path)
        renamed = {era_name(k, c["era"]): v.contiguous() for k, v in tensors.items()}
        save_file(renamed, path, metadata={"format": "pt"})
        cfg_path = os.path.join(d, "adapter_config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["base_model_name_or_path"] = f"tests/fixtures/decoder/{c['base']}"
        if isinstance(cfg["target_modules"], list):  # PEFT saves a set: its order varies by run
            cfg["target_modules"] = sorted(cfg["target_modules"])
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=False)

        save_file({"prompt_logits": prompt_logits.contiguous()}, os.path.join(d, "goldens.safetensors"))
        with open(os.path.join(d, "goldens.json"), "w") as f:
            json.dump({"base": c["base"], "era": c["era"], "lora": c["lora"], "seed": seed,
                       "lora_tensors": len(tensors), "greedy_tokens": greedy, "greedy_margins": margins,
                       "base_greedy_tokens": base_golden["greedy_tokens"],
                       "made_by": {"script": "tools/golden/make_lora_goldens.py", "peft": peft.__version__,
                                   "transformers": transformers.__version__, "torch": torch.__version__,
                                   "safetensors": safetensors.__version__, "attn_implementation": "eager"}},
                      f, indent=1)
        print(name, len(tensors), "tensors, era", c["era"], "greedy", greedy, "min margin", round(min(margins), 4))


if __name__ == "__main__":
    main()
