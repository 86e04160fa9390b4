#!/usr/bin/env python3
"""torch.matmul baseline for bench/gemm_bench.cc: the same shapes and method (warm-up, L2 flush
before each repeat, median of CUDA-event timings), y = x @ w.T in bf16. Runs on the GPU machine,
whose PyTorch is the reference (2.11). Prints one JSON object."""
import argparse
import json
import statistics

import torch

SHAPES = [("vision_qkv_fused", 4096, 3456, 1152), ("vision_out_proj", 4096, 1152, 1152),
          ("vision_fc1", 4096, 4304, 1152), ("vision_fc2", 4096, 1152, 4304),
          ("prefill_q", 330, 2048, 2560), ("prefill_gate_up", 330, 20480, 2560),
          ("prefill_down", 330, 2560, 10240), ("decode_gate_up", 1, 20480, 2560),
          ("decode_lm_head", 1, 262208, 2560), ("square_8192", 8192, 8192, 8192)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "torch_gemm", "skipped": "torch.cuda.is_available() is False"}))
        return
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    out = {"bench": "torch_gemm", "device": torch.cuda.get_device_name(),
           "torch": torch.__version__, "repeats": args.repeats, "results": []}
    for name, m, n, k in SHAPES:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            torch.matmul(x, w.t())
        times = []
        for r in range(args.repeats):
            flush.fill_(r & 0xFF)
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.matmul(x, w.t())
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
        med = statistics.median_low(times)
        out["results"].append({"name": name, "m": m, "n": n, "k": k, "median_us": round(med * 1e3, 2),
                               "min_us": round(min(times) * 1e3, 2),
                               "tflops": round(2 * m * n * k / (med * 1e-3) / 1e12, 1)})
        del x, w
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
