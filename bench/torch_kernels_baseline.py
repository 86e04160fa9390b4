#!/usr/bin/env python3
"""PyTorch baseline for bench/kernels_bench.cc: the same op names, shapes and byte counts, each written
the way transformers 5.17's Gemma 3 code computes it in bf16 (Gemma3RMSNorm, F.layer_norm, q·cos +
rotate_half(q)·sin, gelu_tanh(gate)·up, the projector's reshape + avg_pool2d, embedding × bf16 scale,
conv2d patch embedding + positions). Same method: warm-up, L2 flush before each repeat, CUDA-event
median. Runs on the GPU machine; prints one JSON object."""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps=1e-6):  # Gemma3RMSNorm.forward
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (out * (1.0 + w.float())).type_as(x)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def event_times(fn, repeats, flush):
    """ms of each repeat of fn after 3 warm-ups, the L2 flushed before each, CUDA-event timed."""
    for _ in range(3):
        fn()
    times = []
    for r in range(repeats):
        flush.fill_(r & 0xFF)
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "torch_kernels", "skipped": "torch.cuda.is_available() is False"}))
        return
    dev, bf = "cuda", torch.bfloat16
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    results = []

    def time(name, shape, nbytes, fn):
        times = event_times(fn, args.repeats, flush)
        med = statistics.median_low(times)
        results.append({"name": name, "shape": shape, "bytes": nbytes, "median_us": round(med * 1e3, 2),
                        "min_us": round(min(times) * 1e3, 2), "gbps": round(nbytes / (med * 1e-3) / 1e9, 1)})

    src = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    time("copy", "256MiB", 2 * src.numel(), lambda: dst.copy_(src))
    copy_gbps = results.pop()["gbps"]

    D, QH, HD, I, VOCAB = 2560, 8, 256, 10240, 262208
    with torch.inference_mode():
        for rows in (330, 16384):
            sh, tensor = f"{rows}x{D}", 2 * rows * D
            x = torch.randn(rows, D, device=dev, dtype=bf)
            res = torch.randn(rows, D, device=dev, dtype=bf)
            w = torch.randn(D, device=dev, dtype=bf)
            time(f"rms_norm_{rows}", sh, 2 * tensor, lambda: rms_norm(x, w))
            time(f"add_rms_norm_{rows}", sh, 4 * tensor, lambda: rms_norm(res + rms_norm(x, w), w))
            q = torch.randn(1, QH, rows, HD, device=dev, dtype=bf)  # transformers' [B, heads, S, hd]
            wq = torch.randn(HD, device=dev, dtype=bf)
            qsh, qbytes = f"{rows}x{QH}x{HD}", 2 * rows * QH * HD
            time(f"qk_norm_{rows}", qsh, 2 * qbytes, lambda: rms_norm(q, wq))
            inv = 1.0 / (10000 ** (torch.arange(0, HD, 2, device=dev, dtype=torch.float32) / HD))
            theta = torch.arange(rows, device=dev, dtype=torch.float32)[:, None] * inv[None, :]
            emb = torch.cat((theta, theta), dim=-1)
            cos, sin = emb.cos().to(bf)[None, None], emb.sin().to(bf)[None, None]
            time(f"rope_q_{rows}", qsh, 2 * qbytes, lambda: q * cos + rotate_half(q) * sin)
            gate = torch.randn(rows, I, device=dev, dtype=bf)
            up = torch.randn(rows, I, device=dev, dtype=bf)
            time(f"geglu_{rows}", f"{rows}x{I}", 3 * 2 * rows * I, lambda: F.gelu(gate, approximate="tanh") * up)
            table = torch.randn(VOCAB, D, device=dev, dtype=bf)
            ids = (torch.arange(rows, device=dev) * 7919) % VOCAB
            scale = torch.tensor(D ** 0.5, dtype=bf, device=dev)
            time(f"embedding_{rows}", sh, 2 * tensor, lambda: F.embedding(ids, table) * scale)
            del table, gate, up

        V, P = 1152, 4096
        for images in (1, 4):
            rows = images * P
            x = torch.randn(rows, V, device=dev, dtype=bf)
            w, b = torch.randn(V, device=dev, dtype=bf), torch.randn(V, device=dev, dtype=bf)
            time(f"layer_norm_{rows}", f"{rows}x{V}", 2 * 2 * rows * V, lambda: F.layer_norm(x, (V,), w, b, 1e-6))
            xv = x.view(images, P, V)

            def pool():  # Gemma3MultiModalProjector: transpose, reshape to the grid, pool, back
                g = xv.transpose(1, 2).reshape(images, V, 64, 64)
                return F.avg_pool2d(g, 4, 4).flatten(2).transpose(1, 2)

            time(f"avg_pool_{images}", f"{images}x64x64x{V}", 2 * rows * V + 2 * images * 256 * V, pool)
            pix = torch.randn(images, 3, 896, 896, device=dev, dtype=torch.float32)
            cw = torch.randn(V, 3, 14, 14, device=dev, dtype=bf)
            pos = torch.randn(P, V, device=dev, dtype=bf)

            def patch_embed():  # SiglipVisionEmbeddings: conv on bf16 pixels, flatten, + positions
                return F.conv2d(pix.to(bf), cw, b, stride=14).flatten(2).transpose(1, 2) + pos

            time(f"patch_embed_{images}", f"{images}x3x896x896",
                 4 * images * 3 * 896 * 896 + 2 * rows * V + 2 * V * 588 + 2 * P * V, patch_embed)

        # Greedy sampling of a step's last-position logits: what transformers' generate does per
        # row (the fp32 copy of the logits, argmax) plus the logsumexp our logprob needs.
        for rows in (1, 8, 64):
            lg = torch.randn(rows, VOCAB, device=dev, dtype=bf)

            def greedy():
                f = lg.float()
                return f.argmax(-1), torch.logsumexp(f, -1)

            time(f"greedy_sample_{rows}", f"{rows}x{VOCAB}", 2 * rows * VOCAB, greedy)

        try:  # new in this script: a failure here must not lose the baselines above
            paged = attention_baseline(dev, bf, args.repeats, flush)
        except Exception as e:
            paged = [{"name": "error", "error": f"{type(e).__name__}: {e}"[:300]}]

    print(json.dumps({"bench": "torch_kernels", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "repeats": args.repeats, "copy_gbps": copy_gbps, "results": results,
                      "paged_attention": paged}, indent=1))


def attention_baseline(dev, bf, repeats, flush):
    """The decoder attention shapes of kernels_bench.cc's paged_attention (Gemma 3 4B: 8 query heads over
    4 KV heads, d=256, local window 1024), in torch's SDPA over dense K/V (torch has no paged cache, so
    this is the easier problem), per backend, same names and work counts:
      decode   one query per sequence over its last `keys` keys (no mask needed: the whole range is
               allowed), enable_gqa; GB/s of K+V read
      prefill  one chunk of 330 / 2048 tokens with the Gemma 3 mask (causal, window on local layers,
               bidirectional over the image at positions 10..265) as an explicit boolean mask — which
               rules out the flash backend; TFLOP/s of the allowed (query, key) pairs"""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    HQ, HKV, HD, WINDOW = 8, 4, 256, 1024
    out = []

    def timed(fn):
        return statistics.median_low(event_times(fn, repeats, flush))

    def each_backend(name, shape, fn, unit, amount):
        for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
            row = {"name": name, "shape": shape, "backend": backend}
            try:
                with sdpa_kernel(getattr(SDPBackend, backend)):
                    med = timed(fn)
                row["median_us"] = round(med * 1e3, 2)
                if unit == "gbps":
                    row["kv_bytes"], row["gbps"] = amount, round(amount / (med * 1e-3) / 1e9, 1)
                else:
                    row["flop"], row["tflops"] = amount, round(amount / (med * 1e-3) / 1e12, 1)
            except Exception as e:  # an unsupported backend is a finding, not a crash
                row["unsupported"] = str(e).splitlines()[0][:160]
            out.append(row)

    sdpa = F.scaled_dot_product_attention
    for kind in ("global", "local"):
        for batch in (1, 8, 32, 64):
            for context in (512, 2048, 8192):
                keys = min(context, WINDOW) if kind == "local" else context
                q = torch.randn(batch, HQ, 1, HD, device=dev, dtype=bf)
                k = torch.randn(batch, HKV, keys, HD, device=dev, dtype=bf)
                v = torch.randn_like(k)
                each_backend(f"decode_{kind}_{batch}x{context}", f"{batch}x{context}",
                             lambda: sdpa(q, k, v, enable_gqa=True), "gbps", 2 * batch * keys * HKV * HD * 2)
                del q, k, v
    for kind in ("global", "local"):
        for n in (330, 2048):
            pos = torch.arange(n, device=dev)
            image = (pos >= 10) & (pos < 266)
            mask = (pos[None, :] <= pos[:, None]) | (image[:, None] & image[None, :])
            if kind == "local":
                mask &= pos[None, :] > pos[:, None] - WINDOW
            q = torch.randn(1, HQ, n, HD, device=dev, dtype=bf)
            k = torch.randn(1, HKV, n, HD, device=dev, dtype=bf)
            v = torch.randn_like(k)
            flop = 4 * int(mask.sum()) * HQ * HD
            each_backend(f"prefill_{kind}_{n}", str(n),
                         lambda: sdpa(q, k, v, attn_mask=mask, enable_gqa=True), "tflops", flop)
    return out


if __name__ == "__main__":
    main()
