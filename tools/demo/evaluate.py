#!/usr/bin/env python3
"""Per-rule accuracy of a demo model on fresh game seeds (free greedy decoding in transformers,
the balanced examples of train.py's evaluation): right buttons per (context, reasoning) and the
most common confusions. MODEL=dir (default models/demo), N=examples (default 300).
  ~/venvs/vlmserve/bin/python tools/demo/evaluate.py
"""
import collections
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402
import train  # noqa: E402
from transformers import AutoTokenizer, Gemma3ForConditionalGeneration  # noqa: E402


def main():
    d = os.environ.get("MODEL", os.path.join(HERE, "..", "..", "models", "demo"))
    tok = AutoTokenizer.from_pretrained(d)
    proc = train.make_processor(tok)
    model = Gemma3ForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
    # The same fresh seeds and mix as train.py's evaluation.
    pixels, _, actions, _ = data.make_examples(int(os.environ.get("N", "300")), 1, explore=0.1,
                                               rng_seed=1)
    from PIL import Image
    prompt = train.prompt_inputs(proc, [Image.fromarray(pixels[0])])
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    right = collections.defaultdict(lambda: [0, 0])
    confusions = collections.Counter()
    for ids, want in zip(train.greedy_actions(model, prompt, pixels), actions):
        if eot in ids:
            ids = ids[:ids.index(eot)]
        try:
            got = json.loads(tok.decode(ids))
        except ValueError:
            got = {}
        rule = (want["context"], want["reasoning"])
        right[rule][0] += got.get("button") == want["button"]
        right[rule][1] += 1
        if got.get("button") != want["button"]:
            confusions[(rule, want["button"], got.get("button"))] += 1
    for rule, (ok, n) in sorted(right.items()):
        print(f"{rule[0]:>10} {rule[1]:<13} {ok}/{n}")
    print("most common confusions ((context, reasoning), expert, model):")
    for c, n in confusions.most_common(8):
        print(f"  {c}: {n}")


if __name__ == "__main__":
    main()
