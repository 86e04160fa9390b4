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
        for _ in range(3):
            fn()
        times = []
        for r in range(args.repeats):
            flush.fill_(r & 0xFF)
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
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

    print(json.dumps({"bench": "torch_kernels", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "repeats": args.repeats, "copy_gbps": copy_gbps, "results": results}, indent=1))


if __name__ == "__main__":
    main()
