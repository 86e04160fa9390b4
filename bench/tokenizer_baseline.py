#!/usr/bin/env python3
"""HF tokenizers baseline for bench/tokenizer_bench.cc: the same text (see there), encode MB/s on
one thread (RAYON_NUM_THREADS=1 is set before tokenizers is imported), median of N after a
warm-up. Prints one JSON object.

  python3 bench/tokenizer_baseline.py --tokenizer FILE --cases FILE [--mb 4] [--repeats 7]
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"
import argparse
import json
import statistics
import time

import tokenizers
from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--mb", type=float, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(args.tokenizer)
    load_s = time.perf_counter() - t0
    unit, prompts = "", []
    with open(args.cases, encoding="utf-8") as f:
        for line in f:
            j = json.loads(line)
            if "text" in j and j["cat"] not in ("added", "decode", "meta"):
                unit += j["text"] + "\n"
                if j["cat"] == "prompt":
                    prompts.append(j["text"])
    text = ""
    while len(text.encode()) < args.mb * 1e6:
        text += unit
    nbytes = len(text.encode())
    secs, n_ids = [], 0
    for r in range(args.repeats + 1):
        t0 = time.perf_counter()
        ids = tok.encode(text, add_special_tokens=False).ids
        s = time.perf_counter() - t0
        n_ids = len(ids)
        if r:
            secs.append(s)
    med = statistics.median_low(secs)
    # Short prompts one by one, 20 passes (the per-request cost).
    pbytes = sum(len(p.encode()) for p in prompts)
    psecs = []
    for r in range(args.repeats + 1):
        t0 = time.perf_counter()
        for _ in range(20):
            for p in prompts:
                tok.encode(p)
        s = time.perf_counter() - t0
        if r:
            psecs.append(s)
    pmed = statistics.median_low(psecs)
    print(json.dumps({"bench": "tokenizer_encode", "impl": f"hf-tokenizers {tokenizers.__version__}",
                      "bytes": nbytes, "ids": n_ids, "repeats": args.repeats, "median_s": round(med, 4),
                      "mb_per_s": round(nbytes / med / 1e6, 2), "prompts": len(prompts),
                      "prompt_us_each": round(pmed / (20 * len(prompts)) * 1e6, 2),
                      "prompt_mb_per_s": round(20 * pbytes / pmed / 1e6, 2), "load_s": round(load_s, 2)}))


if __name__ == "__main__":
    main()
