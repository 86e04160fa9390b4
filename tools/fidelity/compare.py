#!/usr/bin/env python3
"""Compare vlmserve-dump's output with tools/fidelity/reference.py's (issue 25's fidelity check).

  python3 tools/fidelity/compare.py --reference REF_DIR --ours OURS_DIR [--json OUT.json]

Criteria (issue 25), each printed with its figure:
  vision   cosine of each image's soft tokens (flattened) with transformers bf16 ≥ 0.999
  logits   cosine at every prompt position ≥ 0.999 (the worst position is reported)
  top-1    agreement ≥ 99 % over the positions whose top-1/top-2 margin in transformers exceeds
           twice the bf16 error bound there (reference.py's `bound`: max |bf16 − fp32| over the
           vocabulary; both sides may move a logit by about that much). Random weights give
           near-ties elsewhere, which say nothing about the runner.
  greedy   our greedy tokens equal transformers' for as long as its margin at each step exceeds
           twice the largest prompt-position bound (after the first step that doesn't, a different
           token is bf16 noise, not an error; those steps are reported, not judged)
Exit 0 when every criterion holds, 1 otherwise (2 on unreadable input).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file

COSINE_MIN = 0.999
TOP1_MIN = 0.99


def cosine(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-300))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    try:
        ref = load_file(os.path.join(args.reference, "reference.safetensors"))
        ref_meta = json.load(open(os.path.join(args.reference, "reference.json")))
        ours = load_file(os.path.join(args.ours, "ours.safetensors"))
        ours_meta = json.load(open(os.path.join(args.ours, "ours.json")))
    except (OSError, ValueError) as e:
        print(f"compare.py: cannot read the inputs: {e}", file=sys.stderr)
        return 2

    res = {"reference": {k: ref_meta.get(k) for k in ("config", "device", "gpu", "torch", "transformers", "seed")},
           "ours": {"device": ours_meta.get("device"), "timings_ms": ours_meta.get("timings_ms")}}
    ok = True

    # Vision: per image, and transformers' own bf16-vs-fp32 figure for scale.
    if "soft_tokens" in ref:
        if "soft_tokens" not in ours or ours["soft_tokens"].shape != ref["soft_tokens"].shape:
            print("vision: FAIL: soft token shapes differ or ours are missing")
            return 1
        cos = [cosine(o, r) for o, r in zip(ours["soft_tokens"], ref["soft_tokens"])]
        own = [cosine(a, b) for a, b in zip(ref["soft_tokens"], ref["soft_tokens_fp32"])]
        per_token = torch.nn.functional.cosine_similarity(
            ours["soft_tokens"].double().flatten(0, 1), ref["soft_tokens"].double().flatten(0, 1), dim=1)
        v_ok = min(cos) >= COSINE_MIN
        ok &= v_ok
        res["vision"] = {"cosine": cos, "worst_token_cosine": float(per_token.min()),
                         "transformers_bf16_vs_fp32_cosine": own, "pass": v_ok}
        print(f"vision: cosine {min(cos):.6f} (worst soft token {float(per_token.min()):.6f}; transformers' own "
              f"bf16 vs fp32 {min(own):.6f}) — {'ok' if v_ok else 'FAIL'} (≥ {COSINE_MIN})")

    # Logits at every prompt position.
    L, O, bound = ref["logits"].double(), ours["logits"].double(), ref["bound"].double()
    if L.shape != O.shape:
        print(f"logits: FAIL: shapes differ, reference {tuple(L.shape)}, ours {tuple(O.shape)}")
        return 1
    pos_cos = torch.nn.functional.cosine_similarity(L, O, dim=1)
    worst = int(pos_cos.argmin())
    top2 = torch.topk(L, 2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    clear = margin > 2 * bound
    agree = (L.argmax(dim=1) == O.argmax(dim=1))
    n_clear = int(clear.sum())
    agreed = int((agree & clear).sum())
    rate = agreed / n_clear if n_clear else 1.0
    l_ok = float(pos_cos.min()) >= COSINE_MIN
    t_ok = rate >= TOP1_MIN
    ok &= l_ok and t_ok
    res["logits"] = {"positions": L.shape[0], "worst_cosine": float(pos_cos.min()), "worst_position": worst,
                     "median_cosine": float(pos_cos.median()), "max_abs_diff": float((L - O).abs().max()),
                     "median_bound": float(bound.median()), "pass": l_ok}
    res["top1"] = {"clear_positions": n_clear, "agreed": agreed, "rate": rate,
                   "agreed_all_positions": int(agree.sum()), "pass": t_ok}
    print(f"logits: worst position cosine {float(pos_cos.min()):.6f} (position {worst} of {L.shape[0]}; median "
          f"{float(pos_cos.median()):.6f}; max |Δ| {float((L - O).abs().max()):.4f}, transformers' own bf16 error "
          f"median {float(bound.median()):.4f}) — {'ok' if l_ok else 'FAIL'} (≥ {COSINE_MIN})")
    print(f"top-1: {agreed} of {n_clear} clear positions agree ({100 * rate:.1f} %; all positions "
          f"{int(agree.sum())}/{L.shape[0]}) — {'ok' if t_ok else 'FAIL'} (≥ {100 * TOP1_MIN:.0f} %)")

    # Greedy tokens while transformers' margin allows.
    g_ref, g_ours, margins = ref_meta["greedy"], ours_meta["greedy"], ref_meta["margins"]
    limit = 2 * float(bound.max())
    judged = next((i for i, m in enumerate(margins) if m <= limit), len(margins))
    judged = min(judged, len(g_ours), len(g_ref))
    same = next((i for i in range(min(len(g_ref), len(g_ours))) if g_ref[i] != g_ours[i]),
                min(len(g_ref), len(g_ours)))
    g_ok = same >= judged
    ok &= g_ok
    res["greedy"] = {"reference": g_ref, "ours": g_ours, "equal_prefix": same, "judged_steps": judged,
                     "margin_limit": limit, "pass": g_ok}
    print(f"greedy: first {same} of {len(g_ref)} tokens equal; the first {judged} are judged (transformers' "
          f"margin > {limit:.4f}) — {'ok' if g_ok else 'FAIL'}")
    res["pass"] = bool(ok)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(f"fidelity: {'PASS' if ok else 'FAIL'} ({ours_meta.get('device')} runner vs transformers "
          f"{ref_meta.get('transformers')} bf16 on {ref_meta.get('gpu') or ref_meta.get('device')})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
