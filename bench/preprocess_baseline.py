#!/usr/bin/env python3
"""Baseline for bench/preprocess_bench.cc: Pillow decode of four 240x160 PNG frames (from memory),
the 2x2 grid, and transformers' Gemma3ImageProcessorPil to 896x896 float32 — ms per grid, one
process, median of N after a warm-up. Writes the frames first (procedural, as the tests' images)
if --frames-dir has none. Prints one JSON object.

  python3 bench/preprocess_baseline.py --frames-dir /tmp/frames [--repeats 50]
"""
import argparse
import io
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import PIL
import transformers
from PIL import Image
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil


def procedural(w, h, seed):
    x = np.arange(w, dtype=np.uint64)[None, :]
    y = np.arange(h, dtype=np.uint64)[:, None]
    s = np.uint64(seed)
    r = (x * np.uint64(7) + y * np.uint64(3) + s * np.uint64(11)) & np.uint64(255)
    g = (((x * y) >> np.uint64(3)) ^ s) & np.uint64(255)
    b = ((x ^ y) + s * np.uint64(5)) & np.uint64(255)
    return np.stack(np.broadcast_arrays(r, g, b), axis=-1).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames-dir", required=True)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    os.makedirs(args.frames_dir, exist_ok=True)
    paths = [os.path.join(args.frames_dir, f"frame_{k}.png") for k in range(4)]
    for k, p in enumerate(paths):
        if not os.path.exists(p):
            Image.fromarray(procedural(240, 160, 100 + k)).save(p)
    data = [open(p, "rb").read() for p in paths]
    proc = Gemma3ImageProcessorPil(size={"height": 896, "width": 896}, resample=2, rescale_factor=1 / 255,
                                   image_mean=[0.5] * 3, image_std=[0.5] * 3)
    times = []
    for r in range(args.repeats + 1):
        t0 = time.perf_counter()
        frames = [Image.open(io.BytesIO(d)).convert("RGB") for d in data]
        grid = Image.new("RGB", (480, 320))
        for i, f in enumerate(frames):
            grid.paste(f, ((i % 2) * 240, (i // 2) * 160))
        pv = proc(grid, return_tensors="np")["pixel_values"]
        t = (time.perf_counter() - t0) * 1e3
        if r:
            times.append(t)
    print(json.dumps({"bench": "preprocess_grid", "impl": f"Pillow {PIL.__version__} + transformers "
                      f"{transformers.__version__} Gemma3ImageProcessorPil", "frames": 4, "size": 896,
                      "repeats": args.repeats, "median_ms": round(statistics.median_low(times), 3),
                      "min_ms": round(min(times), 3), "shape": list(pv.shape)}))


if __name__ == "__main__":
    main()
