#!/usr/bin/env python3
"""Goldens for tests/unit/demo_model_test.cc: transformers (fp32, eager attention, token_type_ids)
on the demo model (models/demo) for prompts the agent sends on fresh game seeds never used in
training — one case per context and most buttons.

Writes tests/fixtures/demo/:
  case<k>_f<j>.png    the four frames of case k (oldest first; the server composes the grid)
  goldens.json        per case: input_ids, image runs, the expert's action, transformers' greedy
                      tokens up to and including <end_of_turn> (free decoding, no grammar), their
                      text, the smallest top-2 logit margin along the way; versions
  goldens.safetensors pixel_values [K, 3, 96, 96] and the last prompt position's logits [K, V]

Needs the pinned venv (tools/requirements.txt). From the repository root:
  ~/venvs/vlmserve/bin/python tools/demo/make_goldens.py
"""
import json
import os
import random
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import game  # noqa: E402
from train import make_processor, prompt_inputs  # noqa: E402

ROOT = os.path.join(HERE, "..", "..")
MODEL = os.path.join(ROOT, "models", "demo")
OUT = os.path.join(ROOT, "tests", "fixtures", "demo")
SEED0 = 9001  # fresh: training used seeds from 1,000,000 on


def pick_cases():
    """(frames, expert action) for one step of each (context, button) pair met on fresh seeds,
    plus the wall_ahead and detour rules, in a fixed order."""
    want = [("other", "start"), ("navigation", "right"), ("navigation", "left"), ("navigation", "up"),
            ("navigation", "down"), ("dialogue", "a"), ("dialogue", "b"), ("menu", "up"),
            ("menu", "down"), ("menu", "a"), ("battle", "left"), ("battle", "right"),
            ("battle", "a"), ("navigation", "wall_ahead")]
    found = {}
    rng = random.Random(5)
    seed = SEED0
    while len(found) < len(want) and seed < SEED0 + 500:
        g, history = game.Game(seed), []
        while not g.done and g.steps < 40:
            history.append(g.frame())
            a = g.expert_action()
            for key in ((a["context"], a["button"]), (a["context"], a["reasoning"])):
                if key in want and key not in found and rng.random() < 0.5:
                    found[key] = (game.last_four(history), a)
            g.step(a["button"])
        seed += 1
    return [found[k] for k in want if k in found]


def main():
    tok = AutoTokenizer.from_pretrained(MODEL)
    proc = make_processor(tok)
    model = Gemma3ForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32).eval()
    for sub in (model, model.model.vision_tower, model.model.language_model):
        sub.config._attn_implementation = "eager"
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    cases, pixels, last_logits = [], [], []
    for k, (frames, action) in enumerate(pick_cases()):
        names = []
        for j, f in enumerate(frames):
            names.append(f"case{k}_f{j}.png")
            f.save(os.path.join(OUT, names[-1]))
        inputs = prompt_inputs(proc, [game.grid(frames)])
        ids, tt = inputs["input_ids"], inputs["token_type_ids"]
        with torch.no_grad():
            out = model(input_ids=ids, pixel_values=inputs["pixel_values"].float(), token_type_ids=tt,
                        use_cache=True)
            past, logits, pos = out.past_key_values, out.logits[0, -1], ids.shape[1]
            last_logits.append(logits.float().clone())
            greedy, margins = [], []
            for _ in range(48):
                top2 = torch.topk(logits.float(), 2)
                margins.append(float(top2.values[0] - top2.values[1]))
                nxt = int(torch.argmax(logits))
                greedy.append(nxt)
                if nxt == eot:
                    break
                step = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True,
                             cache_position=torch.tensor([pos]))
                past, logits, pos = step.past_key_values, step.logits[0, -1], pos + 1
        assert min(margins) > 1e-3, f"case {k}: greedy margin {min(margins)}"
        tts = tt[0].tolist()
        start = tts.index(1)
        cases.append({"frames": names, "input_ids": ids[0].tolist(),
                      "image_runs": [[start, sum(tts)]], "expert_action": action,
                      "greedy_tokens": greedy, "greedy_text": tok.decode(greedy[:-1]),
                      "min_margin": min(margins)})
        pixels.append(inputs["pixel_values"][0].float())
        print(k, action, "->", cases[-1]["greedy_text"], f"(margin {min(margins):.2f})")
    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump({"script": "tools/demo/make_goldens.py", "model": "models/demo",
                   "instruction": game.INSTRUCTION, "cases": cases,
                   "versions": {"torch": torch.__version__, "transformers": transformers.__version__}},
                  f, indent=1)
    save_file({"pixel_values": torch.stack(pixels).contiguous(),
               "last_logits": torch.stack(last_logits).contiguous()},
              os.path.join(OUT, "goldens.safetensors"))


if __name__ == "__main__":
    main()
