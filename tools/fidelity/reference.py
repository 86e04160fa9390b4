#!/usr/bin/env python3
"""The transformers side of the runner fidelity check (issue 25): a seeded random model of a
Gemma 3 config, one game-step-shaped prompt, and what transformers computes for it in bf16 — with
the same computation in fp32 on the same (bf16-rounded) weights as the measure of bf16 error.

  python3 tools/fidelity/reference.py --config bench/configs/gemma-3-4b-it.json \\
      --model-out /tmp/g4b/model --out /tmp/g4b/ref [--device cuda] [--seed 0]

Writes
  MODEL_OUT/  config.json + safetensors (bf16): the model our runner loads (vlmserve-dump --model)
  OUT/inputs.json         input_ids, token_types (1 on image soft tokens): the prompt as ids
  OUT/pixels.safetensors  pixel_values F32 [images, 3, S, S] (values exact in bf16, so both sides
                          start from the same numbers)
  OUT/reference.safetensors
      soft_tokens       F32 [images, mm, D]  get_image_features (vision tower + projector), bf16
      soft_tokens_fp32  F32 [images, mm, D]  the same in fp32
      logits            F32 [T, V]  every prompt position, bf16 forward
      bound             F32 [T]     max |bf16 − fp32| over the vocabulary at each position: how far
                                    bf16 arithmetic alone moves a logit there
  OUT/reference.json  greedy (16 bf16 greedy ids, cached decoding), margins (top-1 − top-2 at each
                      of those steps), greedy_fp32, versions, seed, shapes

The prompt: <bos> user-turn header, per image <boi> mm×<image> <eoi>, `--text-tokens` random
ordinary ids, turn end + model-turn header (ids above the vocabulary become <unk> = 3, for tiny
vocabularies). Random weights are transformers' own initialisation (normal, std
initializer_range) under `--seed`; pixels uniform in [-1, 1].
"""
import argparse
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file


def log(msg):
    print(f"[reference {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_model(config_path, device, seed):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    with open(config_path) as f:
        cfg = Gemma3Config(**json.load(f))
    for c in (cfg, cfg.text_config, cfg.vision_config):
        c._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # materialise in bf16: the weights both sides use
    try:
        with torch.device(device):
            model = Gemma3ForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(prev)
    # transformers zero-initialises the projector (mm_input_projection_weight): the soft tokens
    # would all be 0 and the image would test nothing. Every all-zero matrix gets normal values of
    # std 1/sqrt(fan_in) (unit-scale soft tokens, like the √D-scaled text embeddings).
    g = torch.Generator(device=device).manual_seed(seed + 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and not p.any():
                fan_in = p.shape[0] if "mm_input_projection" in name else p.shape[1]  # [d_vision, D]
                p.copy_(torch.randn(p.shape, generator=g, device=device, dtype=torch.float32) / fan_in ** 0.5)
                log(f"re-initialised {name} {tuple(p.shape)} (zero after transformers' init)")
    return cfg, model.to(torch.bfloat16).eval()


def make_prompt(cfg, images, text_tokens, seed):
    g = torch.Generator().manual_seed(seed + 1)
    vocab = cfg.text_config.vocab_size
    mm = cfg.mm_tokens_per_image
    ids = [2, 105, 2364, 107]
    for _ in range(images):
        ids += [cfg.boi_token_index] + [cfg.image_token_index] * mm + [cfg.eoi_token_index]
    ids += torch.randint(1000, max(1001, min(vocab, 200000)), (text_tokens,), generator=g).tolist()
    ids += [106, 107, 105, 4368, 107]
    ids = [i if i < vocab or i == cfg.image_token_index else 3 for i in ids]
    size = cfg.vision_config.image_size
    pixels = (torch.rand((images, 3, size, size), generator=g) * 2 - 1).to(torch.bfloat16).float()
    return ids, pixels


def forward(model, input_ids, token_type_ids, pixel_values, steps):
    """Prompt logits, soft tokens, `steps` greedy ids (cached decoding) and their margins."""
    with torch.no_grad():
        soft = model.get_image_features(pixel_values=pixel_values).pooler_output
        out = model(input_ids=input_ids, pixel_values=pixel_values, token_type_ids=token_type_ids,
                    use_cache=True)
        prompt_logits = out.logits[0].float()
        past = out.past_key_values
        logits = out.logits[0, -1]
        pos = input_ids.shape[1]
        greedy, margins = [], []
        for _ in range(steps):
            top2 = torch.topk(logits.float(), 2)
            margins.append(float(top2.values[0] - top2.values[1]))
            nxt = int(top2.indices[0])
            greedy.append(nxt)
            step = model(input_ids=torch.tensor([[nxt]], device=input_ids.device), past_key_values=past,
                         use_cache=True, cache_position=torch.tensor([pos], device=input_ids.device))
            past = step.past_key_values
            logits = step.logits[0, -1]
            pos += 1
    return prompt_logits, soft.float(), greedy, margins


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="a Gemma 3 config.json")
    ap.add_argument("--model-out", required=True, help="where the random model is saved (bf16)")
    ap.add_argument("--out", required=True, help="where inputs and reference outputs go")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--text-tokens", type=int, default=62, help="random text ids (≈70 prompt tokens in all)")
    ap.add_argument("--new-tokens", type=int, default=16)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import transformers

    t0 = time.time()
    cfg, model = build_model(args.config, args.device, args.seed)
    log(f"random model ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params) on {args.device} "
        f"in {time.time() - t0:.1f} s")
    t0 = time.time()
    model.save_pretrained(args.model_out)
    log(f"saved to {args.model_out} in {time.time() - t0:.1f} s")

    ids, pixels = make_prompt(cfg, args.images, args.text_tokens, args.seed)
    types = [1 if i == cfg.image_token_index else 0 for i in ids]
    with open(os.path.join(args.out, "inputs.json"), "w") as f:
        json.dump({"input_ids": ids, "token_types": types}, f)
    save_file({"pixel_values": pixels.contiguous()}, os.path.join(args.out, "pixels.safetensors"))

    dev = torch.device(args.device)
    input_ids = torch.tensor([ids], device=dev)
    token_type_ids = torch.tensor([types], device=dev)
    t0 = time.time()
    logits, soft, greedy, margins = forward(model, input_ids, token_type_ids,
                                            pixels.to(dev, torch.bfloat16), args.new_tokens)
    log(f"bf16 forward + {args.new_tokens} greedy steps in {time.time() - t0:.1f} s")
    logits, soft = logits.cpu(), soft.cpu()
    model = model.float()  # the same bf16-rounded weights, fp32 arithmetic
    t0 = time.time()
    logits32, soft32, greedy32, _ = forward(model, input_ids, token_type_ids, pixels.to(dev), args.new_tokens)
    log(f"fp32 forward in {time.time() - t0:.1f} s")
    bound = (logits - logits32.cpu()).abs().amax(dim=1)
    save_file({"soft_tokens": soft.contiguous(), "soft_tokens_fp32": soft32.cpu().contiguous(),
               "logits": logits.contiguous(), "bound": bound.contiguous()},
              os.path.join(args.out, "reference.safetensors"))
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({"greedy": greedy, "margins": margins, "greedy_fp32": greedy32,
                   "prompt_tokens": len(ids), "images": args.images, "seed": args.seed,
                   "config": os.path.basename(args.config), "device": str(dev),
                   "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
                   "torch": torch.__version__, "transformers": transformers.__version__}, f, indent=1)
    log(f"reference written to {args.out}: {len(ids)} prompt tokens, greedy {greedy}")


if __name__ == "__main__":
    main()
