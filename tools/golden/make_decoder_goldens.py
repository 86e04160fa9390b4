#!/usr/bin/env python3
"""End-to-end decoder goldens for tests/unit/decoder_test.cc and the vlmserve-generate CLI test,
made by transformers (tools/requirements.txt) in fp32 with attn_implementation="eager".

Each case is a tiny Gemma3ForConditionalGeneration (every parameter re-randomised) using the tiny
Gemma-format tokenizer of tests/fixtures/tokenizer/tiny, so that a model directory is complete
(config.json, weights, tokenizer.json, tokenizer_config.json). The prompt is built by
Gemma3Processor (chat template, image expansion, Gemma3ImageProcessorPil), and the model is run
with input_ids, pixel_values and token_type_ids (without them HF silently uses a causal mask).

Writes tests/fixtures/decoder/<name>/: the model directory, the prompt's images as PNG, and
  goldens.safetensors   pixel_values [N, 3, S, S] and prompt_logits [S_prompt, V] (every position)
  goldens.json          messages, pan_and_scan, input_ids, token_type_ids runs, 16 greedy tokens
                        (cached decoding, argmax), the top-2 logit margin at each greedy step
                        (all > 1e-3, asserted), the decoded greedy text, versions.

Features across the cases (issue: every feature exercised): a hidden size whose square root is not
exact in bf16 (48, 40); query_pre_attn_scalar ≠ head_dim; GQA 2:1 and 4:1; sliding windows (8, 16)
shorter than the prompt; global layers with linear RoPE scaling; two images in one prompt; pan &
scan on a wide image; one checkpoint saved with save_original_format=False (runtime names).

Run from the repository root:  python3 tools/golden/make_decoder_goldens.py
"""
import json
import os
import shutil

import numpy as np
import safetensors
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

OUT = os.path.join("tests", "fixtures", "decoder")
TOK_DIR = os.path.join("tests", "fixtures", "tokenizer", "tiny")
VOCAB = 1216  # the tiny tokenizer's 1188 ids, padded to a multiple of 64 like Gemma's embedding
PAS = dict(pan_and_scan_min_crop_size=256, pan_and_scan_max_num_crops=4,
           pan_and_scan_min_ratio_to_activate=1.2)


def procedural(w, h, seed):
    x = np.arange(w, dtype=np.uint64)[None, :]
    y = np.arange(h, dtype=np.uint64)[:, None]
    s = np.uint64(seed)
    r = (x * np.uint64(7) + y * np.uint64(3) + s * np.uint64(11)) & np.uint64(255)
    g = (((x * y) >> np.uint64(3)) ^ s) & np.uint64(255)
    b = ((x ^ y) + s * np.uint64(5)) & np.uint64(255)
    return np.stack(np.broadcast_arrays(r, g, b), axis=-1).astype(np.uint8)


VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
              image_size=28, patch_size=7, vision_use_head=False)
SYSTEM = "You play a Game Boy Advance game. Reply with one JSON action."

CASES = {
    "gqa2_two_images": dict(
        text=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, sliding_window=16,
                  layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
                  rope_scaling={"rope_type": "linear", "factor": 4.0}, rope_theta=1e6, rope_local_base_freq=1e4),
        mm=4, images=[(64, 48, 1), (64, 48, 2)], pan_and_scan=False, runtime_names=False, seed=11,
        messages=lambda: [{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Then:"},
                                                       {"type": "image"}, {"type": "text", "text": "Which button next?"}]}]),
    "gqa4_pan_scan_runtime_names": dict(
        text=dict(hidden_size=40, intermediate_size=72, num_hidden_layers=3, num_attention_heads=8,
                  num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=12, sliding_window=8,
                  layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                  rope_scaling={"rope_type": "linear", "factor": 8.0}, rope_theta=1e6, rope_local_base_freq=1e4),
        mm=4, images=[(1024, 256, 3)], pan_and_scan=True, runtime_names=True, seed=23,
        messages=lambda: [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read the wide banner."}]}]),
    "pool16_six_layers": dict(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, sliding_window=512,
                  sliding_window_pattern=6),
        mm=16, vision_override=dict(image_size=56), images=[(96, 64, 4)], pan_and_scan=False,
        runtime_names=False, seed=13,
        messages=lambda: [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What do you see?"}]},
                          {"role": "assistant", "content": '{"button":"a"}'},
                          {"role": "user", "content": [{"type": "text", "text": "And now?"}]}]),
}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p.shape[-1] if p.dim() >= 2 else 1
            if "patch_embedding.weight" in name:
                fan_in = p[0].numel()
            if "mm_input_projection_weight" in name:
                fan_in = p.shape[0]
            std = 0.7 / fan_in ** 0.5 if p.dim() >= 2 else 0.3
            if "embed_tokens" in name:
                # Small next to the layers' normalised outputs, so the (tied) logits are not just
                # "repeat the last token": greedy decoding then visits varied tokens and positions.
                std = 0.03
            p.copy_(torch.randn(p.shape, generator=g) * std)
            if p.dim() == 1 and ("layer_norm" in name or "post_layernorm" in name) and name.endswith("weight"):
                p.add_(1.0)


def run_greedy(model, input_ids, pixel_values, token_type_ids, steps=16):
    """Logits at every prompt position, then `steps` greedy tokens with cached decoding and the
    top-2 logit margin at each step."""
    with torch.no_grad():
        out = model(input_ids=input_ids, pixel_values=pixel_values, token_type_ids=token_type_ids,
                    use_cache=True)
        prompt_logits = out.logits[0].float().clone()
        past = out.past_key_values
        greedy, margins = [], []
        logits = out.logits[0, -1]
        pos = input_ids.shape[1]
        for _ in range(steps):
            top2 = torch.topk(logits.float(), 2)
            margins.append(float(top2.values[0] - top2.values[1]))
            nxt = int(torch.argmax(logits))
            greedy.append(nxt)
            step = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True,
                         cache_position=torch.tensor([pos]))
            past = step.past_key_values
            logits = step.logits[0, -1]
            pos += 1
    return prompt_logits, greedy, margins


def token_ids(tok, s):
    return tok.convert_tokens_to_ids(s)


def main():
    tok = AutoTokenizer.from_pretrained(TOK_DIR)
    with open(os.path.join(TOK_DIR, "tokenizer_config.json")) as f:
        template = json.load(f)["chat_template"]
    os.makedirs(OUT, exist_ok=True)
    for name, c in CASES.items():
        torch.manual_seed(c["seed"])
        vision = dict(VISION, **c.get("vision_override", {}))
        eot = token_ids(tok, "<end_of_turn>")
        cfg = Gemma3Config(text_config=dict(c["text"], vocab_size=VOCAB, max_position_embeddings=4096,
                                            eos_token_id=[1, eot], pad_token_id=0, bos_token_id=2),
                           vision_config=vision, mm_tokens_per_image=c["mm"],
                           boi_token_index=token_ids(tok, "<start_of_image>"),
                           eoi_token_index=token_ids(tok, "<end_of_image>"),
                           image_token_index=token_ids(tok, "<image_soft_token>"), eos_token_id=[1, eot])
        model = Gemma3ForConditionalGeneration(cfg).to(torch.float32).eval()
        for sub in (model, model.model.vision_tower, model.model.language_model):
            sub.config._attn_implementation = "eager"
        randomize(model, c["seed"])

        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d, save_original_format=not c["runtime_names"])
        if os.path.exists(os.path.join(d, "generation_config.json")):
            os.remove(os.path.join(d, "generation_config.json"))
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(TOK_DIR, f), d)

        ip = Gemma3ImageProcessorPil(size={"height": vision["image_size"], "width": vision["image_size"]},
                                     resample=2, rescale_factor=1 / 255, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        proc = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=template,
                               image_seq_length=c["mm"])
        images = []
        for k, (w, h, seed) in enumerate(c["images"]):
            im = Image.fromarray(procedural(w, h, seed))
            im.save(os.path.join(d, f"image{k}.png"))
            images.append(im)
        messages = c["messages"]()
        hf_messages = []
        k = 0
        for m in messages:
            if isinstance(m["content"], str):
                hf_messages.append(m)
                continue
            parts = []
            for p in m["content"]:
                if p["type"] == "image":
                    parts.append({"type": "image", "image": images[k]})
                    k += 1
                else:
                    parts.append(p)
            hf_messages.append({"role": m["role"], "content": parts})
        kw = dict(do_pan_and_scan=True, **PAS) if c["pan_and_scan"] else {}
        inputs = proc.apply_chat_template(hf_messages, add_generation_prompt=True, tokenize=True,
                                          return_dict=True, return_tensors="pt", **kw)
        input_ids = inputs["input_ids"]
        pixel_values = inputs["pixel_values"].to(torch.float32)
        token_type_ids = inputs["token_type_ids"]
        num_crops = proc.image_processor(images, return_tensors="np", do_pan_and_scan=c["pan_and_scan"],
                                         **PAS)["num_crops"].tolist()

        prompt_logits, greedy, margins = run_greedy(model, input_ids, pixel_values, token_type_ids)
        assert min(margins) > 1e-3, f"{name}: greedy margin {min(margins)}; pick another seed"
        tt = token_type_ids[0].tolist()
        runs, i = [], 0
        while i < len(tt):
            if tt[i]:
                j = i
                while j < len(tt) and tt[j]:
                    j += 1
                runs.append([i, j - i])
                i = j
            else:
                i += 1
        save_file({"pixel_values": pixel_values.contiguous(), "prompt_logits": prompt_logits.contiguous()},
                  os.path.join(d, "goldens.safetensors"))
        with open(os.path.join(d, "goldens.json"), "w") as f:
            json.dump({"messages": messages, "pan_and_scan": c["pan_and_scan"], "num_crops": num_crops,
                       "images": [f"image{k}.png" for k in range(len(images))],
                       "input_ids": input_ids[0].tolist(), "image_runs": runs,
                       "greedy_tokens": greedy, "greedy_margins": margins,
                       "greedy_text": tok.decode(greedy, skip_special_tokens=False),
                       "made_by": {"script": "tools/golden/make_decoder_goldens.py",
                                   "transformers": transformers.__version__, "torch": torch.__version__,
                                   "safetensors": safetensors.__version__, "attn_implementation": "eager"}},
                      f, indent=1)
        print(name, "prompt", input_ids.shape[1], "tokens,", len(runs), "image runs, min margin",
              round(min(margins), 4), "greedy", greedy)


if __name__ == "__main__":
    main()
