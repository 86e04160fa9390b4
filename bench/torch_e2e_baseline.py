#!/usr/bin/env python3
"""transformers/PyTorch baselines for the performance.md targets: one request = one 896x896 grid + ~70 text
tokens, on Gemma3ForConditionalGeneration with random weights of the real gemma-3-4b-it config (values do
not change the cost), bf16, SDPA attention. Runs on the GPU machine; prints one JSON object.

Measures (median of --repeats after warm-up; wall time with torch.cuda.synchronize, i.e. what a user of
transformers sees, host overhead included):
  vision_ms        get_image_features: SigLIP tower + projector for one image
  prefill_ms       model(...) on the whole prompt incl. the image (the time to the first logits)
  generate_ms      model.generate(max_new_tokens=N, greedy, forced length): the end-to-end baseline
  decode_ms_per_token  (generate_N - generate_1) / (N - 1)
  sdpa             scaled_dot_product_attention at the vision shape (B=1, H=16, N=4096, d=72, not causal),
                   per backend, CUDA-event timed: the baseline for our d=72 attention kernel

  python3 bench/torch_e2e_baseline.py                          (GPU machine)
  python3 bench/torch_e2e_baseline.py --device cpu --dtype float32 --config tests/fixtures/decoder/pool16_six_layers/config.json
                                                               (rehearsal on a tiny model here)
"""
import argparse
import json
import os
import statistics
import time

import torch
import transformers
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def wall_ms(fn, dev, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": round(statistics.median_low(times), 3), "min_ms": round(min(times), 3)}


def build_model(config_path, dev, dtype):
    with open(config_path) as f:
        cfg = Gemma3Config(**json.load(f))
    for c in (cfg, cfg.text_config, cfg.vision_config):
        c._attn_implementation = "sdpa"
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # materialise weights directly in the compute dtype
    with torch.device(dev):
        model = Gemma3ForConditionalGeneration(cfg)
    torch.set_default_dtype(prev)
    return cfg, model.to(dtype).eval()


def request(cfg, dev, dtype, text_tokens):
    """One prompt shaped like a game step: <bos> turn header, <boi> image tokens <eoi>, ~text_tokens of text,
    turn end + model header. Text ids are arbitrary ordinary pieces (cost does not depend on them)."""
    mm = cfg.mm_tokens_per_image
    g = torch.Generator().manual_seed(1)
    vocab = cfg.text_config.vocab_size
    text = torch.randint(1000, min(vocab, 200000), (text_tokens,), generator=g).tolist()
    ids = [2, 105, 2364, 107, cfg.boi_token_index] + [cfg.image_token_index] * mm + [cfg.eoi_token_index] + text
    ids += [106, 107, 105, 4368, 107]
    ids = [i if i < vocab else 3 for i in ids]  # tiny rehearsal vocabularies lack the turn tokens
    input_ids = torch.tensor([ids], device=dev)
    token_type_ids = (input_ids == cfg.image_token_index).long()
    size = cfg.vision_config.image_size
    pixel_values = (torch.rand((1, 3, size, size), generator=g) * 2 - 1).to(dev, dtype)
    return input_ids, token_type_ids, pixel_values


def sdpa_bench(dev, dtype, repeats, b=1):
    if dev != "cuda":
        return {"skipped": "CUDA only"}
    from torch.nn.attention import SDPBackend, sdpa_kernel
    h, n, d = 16, 4096, 72
    q, k, v = (torch.randn(b, h, n, d, device=dev, dtype=dtype) for _ in range(3))
    flops = 4 * b * h * n * n * d
    out = {"shape": [b, h, n, d], "gflop": round(flops / 1e9, 2), "backends": {}}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH", "default"):
        try:
            ctx = sdpa_kernel(getattr(SDPBackend, name)) if name != "default" else None

            def run():
                torch.nn.functional.scaled_dot_product_attention(q, k, v)

            if ctx:
                with ctx:
                    run()
                    times = event_times(run, repeats)
            else:
                run()
                times = event_times(run, repeats)
            med = statistics.median_low(times)
            out["backends"][name] = {"median_us": round(med * 1e3, 1),
                                     "tflops": round(flops / (med * 1e-3) / 1e12, 1)}
        except Exception as e:  # a backend that does not support the shape/GPU is a finding, not a crash
            out["backends"][name] = {"unsupported": str(e).splitlines()[0][:200]}
    return out


def event_times(fn, repeats):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(HERE, "configs", "gemma-3-4b-it.json"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--text-tokens", type=int, default=60, help="text tokens besides the turn markers")
    ap.add_argument("--new-tokens", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    dev, dtype = args.device, getattr(torch, args.dtype)
    if dev == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"bench": "torch_e2e", "skipped": "torch.cuda.is_available() is False"}))
        return
    out = {"bench": "torch_e2e", "torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "dtype": args.dtype,
           "config": os.path.relpath(args.config), "attn_implementation": "sdpa", "repeats": args.repeats}
    out["sdpa_vision_attention"] = sdpa_bench(dev, dtype, 20)
    out["sdpa_vision_attention_4"] = sdpa_bench(dev, dtype, 20, b=4)  # issue 24's shape: 4 images

    t0 = time.perf_counter()
    cfg, model = build_model(args.config, dev, dtype)
    out["build_s"] = round(time.perf_counter() - t0, 1)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    input_ids, token_type_ids, pixel_values = request(cfg, dev, dtype, args.text_tokens)
    out["prompt_tokens"] = input_ids.shape[1]
    eos = cfg.text_config.eos_token_id if hasattr(cfg.text_config, "eos_token_id") else None

    with torch.inference_mode():
        out["vision_ms"] = wall_ms(lambda: model.get_image_features(pixel_values=pixel_values), dev, args.repeats)
        out["prefill_ms"] = wall_ms(lambda: model(input_ids=input_ids, pixel_values=pixel_values,
                                                  token_type_ids=token_type_ids, use_cache=True),
                                    dev, args.repeats)

        def generate(n):
            return model.generate(input_ids=input_ids, pixel_values=pixel_values, token_type_ids=token_type_ids,
                                  max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0,
                                  eos_token_id=eos)

        produced = generate(args.new_tokens).shape[1] - input_ids.shape[1]
        out["generated_tokens"] = produced
        one = wall_ms(lambda: generate(1), dev, args.repeats)
        full = wall_ms(lambda: generate(args.new_tokens), dev, args.repeats)
        out["generate_1_ms"] = one
        out[f"generate_{args.new_tokens}_ms"] = full
        out["decode_ms_per_token"] = round((full["median_ms"] - one["median_ms"]) / max(1, produced - 1), 3)
    if dev == "cuda":
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
