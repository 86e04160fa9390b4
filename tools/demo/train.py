#!/usr/bin/env python3
"""Trains the demo model (the server's built-in model) on the game of examples/agent/game.py.

A small model of the real Gemma 3 architecture (SigLIP tower, projector, Gemma 3 decoder; loadable
by transformers as Gemma3ForConditionalGeneration) with its own small tokenizer in Gemma's
tokenizer.json format, trained from scratch on the CPU with fixed seeds, then written as a normal
model directory (float32 safetensors, config.json, tokenizer.json, tokenizer_config.json with the
chat template).

Shapes, chosen so that one image token is one tile of the newest frame: the server composes the
last four 240x160 frames into a 480x320 grid, the processor resizes it to 96x96, the vision tower
cuts 12x12 patches (8x8 = 64 patches, one per 60x40 tile of each frame), and the projector keeps
all 64 (mm_tokens_per_image = 64, pooling kernel 1).

Needs the pinned venv (tools/requirements.txt); never run by CI. models/demo is this script's
defaults, from the repository root (4300 steps: 27 minutes alone on 2 cores, 0.38 s a step;
bench/results/2026-12-03-cpu-demo):
  ~/venvs/vlmserve/bin/python tools/demo/train.py --out models/demo
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import transformers
from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import data  # noqa: E402
from data import IMAGE_SIZE, game  # noqa: E402
from make_tokenizer_goldens import train_tiny  # noqa: E402

ROOT = os.path.join(HERE, "..", "..")
TEMPLATE_FROM = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "tiny", "tokenizer_config.json")
MM_TOKENS = 64
TEXT = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32, sliding_window=512,
            layer_types=["sliding_attention"] * 3 + ["full_attention"], max_position_embeddings=1024)
VISION = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
              image_size=IMAGE_SIZE, patch_size=12, vision_use_head=False)
TRAIN_SEED0 = 1_000_000  # training episodes use seeds from here on; the demo and the goldens below


def make_tokenizer(out):
    """A small BPE on the instruction and every action text: merges within words, '"' never merged
    (see train_tiny)."""
    corpus = [game.INSTRUCTION] * 50
    reasons = ["title_screen", "clear_path", "wall_ahead", "detour", "advance_text", "close_text",
               "move_cursor", "select_item", "choose_move", "confirm"]
    for b in game.BUTTONS:
        for r in reasons:
            for c in game.CONTEXTS:
                corpus.append(data.action_text({"button": b, "reasoning": r, "context": c}))
    corpus += ["The player walks to the goal around the walls.", "Press start to begin.",
               "Move the cursor to the item and select it.", "Advance the text or close it."] * 20
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(train_tiny(corpus, vocab_size=600, limit_alphabet=80, isolate='"', words=True))
    shutil.copy(TEMPLATE_FROM, os.path.join(out, "tokenizer_config.json"))
    return AutoTokenizer.from_pretrained(out)


def make_processor(tok):
    with open(TEMPLATE_FROM) as f:
        template = json.load(f)["chat_template"]
    ip = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=2,
                                 rescale_factor=1 / 255, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=template,
                           image_seq_length=MM_TOKENS)


def prompt_inputs(proc, images):
    """The server's prompt for Predict (image, then the instruction; no system prompt)."""
    messages = [[{"role": "user", "content": [{"type": "image", "image": im},
                                              {"type": "text", "text": game.INSTRUCTION}]}]
                for im in images]
    return proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                    return_dict=True, return_tensors="pt")


def make_model(tok):
    ids = tok.convert_tokens_to_ids
    vocab = (len(tok) + 63) // 64 * 64  # padded like Gemma's embedding
    eot = ids("<end_of_turn>")
    cfg = Gemma3Config(text_config=dict(TEXT, vocab_size=vocab, eos_token_id=[1, eot], pad_token_id=0,
                                        bos_token_id=2),
                       vision_config=VISION, mm_tokens_per_image=MM_TOKENS,
                       boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
                       image_token_index=ids("<image_soft_token>"), eos_token_id=[1, eot])
    return Gemma3ForConditionalGeneration(cfg)


def sincos_positions(model):
    """Starts the vision tower's position embeddings as 2-D sine/cosine features of each patch's
    (row, column) instead of noise: the game's rules compare positions (player and goal, cursor and
    marked item) and tell the newest frame's quadrant from the older ones, which a tiny model
    trained from scratch on two cores otherwise learns slowly. They are trained like any weight."""
    emb = model.model.vision_tower.embeddings.position_embedding.weight
    n, dim = emb.shape
    side = int(round(n ** 0.5))
    quarter = dim // 4
    freq = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    rows = torch.arange(n) // side
    cols = torch.arange(n) % side
    feats = []
    for axis in (rows, cols):
        angle = axis[:, None].float() * freq[None, :]
        feats += [torch.sin(angle), torch.cos(angle)]
    with torch.no_grad():
        emb.copy_(torch.cat(feats, 1)[:, :dim])


def to_pixels(u8):
    """uint8 [B, S, S, 3] -> the processor's pixel_values [B, 3, S, S] (rescale, normalise 0.5/0.5)."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float()
    return (x * (1 / 255) - 0.5) / 0.5


def answer_ids(tok, texts):
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    return [tok.encode(t, add_special_tokens=False) + [eot] for t in texts]


@torch.no_grad()
def greedy_actions(model, prompt, pixels_u8, max_new=32, batch=64):
    """Free greedy decoding (no grammar) of each example; returns the decoded texts' ids."""
    outs = []
    for i in range(0, len(pixels_u8), batch):
        px = to_pixels(pixels_u8[i:i + batch])
        n = px.shape[0]
        ids = prompt["input_ids"][:1].repeat(n, 1)
        tt = prompt["token_type_ids"][:1].repeat(n, 1)
        g = model.generate(input_ids=ids, pixel_values=px, token_type_ids=tt,
                           attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                           do_sample=False)
        outs += [row[ids.shape[1]:].tolist() for row in g]
    return outs


def evaluate(model, tok, prompt, pixels, actions):
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    outs = greedy_actions(model, prompt, pixels)
    ok_button = ok_all = valid = 0
    for ids, want in zip(outs, actions):
        if eot in ids:
            ids = ids[:ids.index(eot)]
        try:
            got = json.loads(tok.decode(ids))
            valid += 1
        except ValueError:
            continue
        ok_button += got.get("button") == want["button"]
        ok_all += got == want
    n = len(actions)
    return {"button_accuracy": ok_button / n, "action_accuracy": ok_all / n, "valid_json": valid / n}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--examples", type=int, default=40000)
    ap.add_argument("--steps", type=int, default=4300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval", type=int, default=700)
    ap.add_argument("--init", default=None,
                    help="continue from this model directory's weights (same shapes and tokenizer) "
                         "instead of from scratch; its training.json is kept as the first stage")
    ap.add_argument("--data-seed", type=int, default=0, help="seeds the episodes' random buttons")
    ap.add_argument("--nav-examples", type=int, default=24000,
                    help="extra navigation-only examples (balanced over its buttons and reasons) "
                         "added to the balanced set")
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    tok = make_tokenizer(args.out)
    proc = make_processor(tok)

    t0 = time.time()
    pixels, texts, actions, next_seed = data.make_examples(args.examples, TRAIN_SEED0,
                                                           rng_seed=args.data_seed)
    if args.nav_examples:
        # Navigation is the one rule that compares tiles (player, goal, the wall next to the
        # player); the other contexts are learned from the balanced set alone.
        nav_pixels, nav_texts, nav_actions, _ = data.make_examples(
            args.nav_examples, next_seed, rng_seed=args.data_seed + 1000, context="navigation")
        pixels = np.concatenate([pixels, nav_pixels])
        texts, actions = texts + nav_texts, actions + nav_actions
    ev_pixels, _, ev_actions, _ = data.make_examples(args.eval, 1, explore=0.1, rng_seed=1)
    print(f"{len(texts)} training examples in {time.time() - t0:.0f} s", flush=True)

    # The training pictures are resized by data.py as the processor does; check a few, bit for bit.
    from PIL import Image
    probe = [Image.fromarray(pixels[i]) for i in range(4)]
    prompt = prompt_inputs(proc, probe[:1])
    ref = prompt_inputs(proc, [game.grid(game.last_four([game.Game(7).frame()]))])["pixel_values"]
    own = to_pixels(np.asarray(
        game.grid(game.last_four([game.Game(7).frame()])).resize((IMAGE_SIZE, IMAGE_SIZE), 2))[None])
    # (the normalisation's float rounding may differ by an ulp; a different resize would show as
    # whole 1/255 steps)
    assert (ref.float() - own).abs().max() < 1e-6, "data.py's resize differs from Gemma3ImageProcessorPil"

    model = make_model(tok)
    sincos_positions(model)
    stages = []
    if args.init:
        model = Gemma3ForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
        with open(os.path.join(args.init, "training.json")) as f:
            stages = json.load(f).get("stages", [])
    for sub in (model, model.model.vision_tower, model.model.language_model):
        sub.config._attn_implementation = "sdpa"
    print(f"{sum(p.numel() for p in model.parameters())} parameters, vocab {len(tok)}", flush=True)
    P = prompt["input_ids"].shape[1]
    answers = answer_ids(tok, texts)
    L = max(len(a) for a in answers)
    targets = torch.full((len(answers), L), -100, dtype=torch.long)
    for i, a in enumerate(answers):
        targets[i, :len(a)] = torch.tensor(a)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1, s / args.steps))))
    g = torch.Generator().manual_seed(0)
    model.train()
    t0 = time.time()
    for step in range(args.steps):
        idx = torch.randint(0, len(answers), (args.batch,), generator=g)
        tgt = targets[idx]
        inp = torch.cat([prompt["input_ids"][:1].repeat(args.batch, 1), tgt.clamp(min=0)], 1)
        tt = torch.cat([prompt["token_type_ids"][:1].repeat(args.batch, 1),
                        torch.zeros_like(tgt)], 1)
        out = model(input_ids=inp, pixel_values=to_pixels(pixels[idx.numpy()]), token_type_ids=tt,
                    attention_mask=torch.ones_like(inp))
        logits = out.logits[:, P - 1:-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 tgt.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{time.time() - t0:.0f} s", flush=True)
    model.eval()
    print(f"trained in {time.time() - t0:.0f} s", flush=True)
    metrics = evaluate(model, tok, prompt, ev_pixels, ev_actions)
    print("eval on fresh seeds (free greedy, no grammar):", metrics, flush=True)

    model.save_pretrained(args.out)
    gen = os.path.join(args.out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    stages.append({"script": "tools/demo/train.py", "args": vars(args) | {"out": "models/demo"},
                   "eval_fresh_seeds": metrics, "train_seconds": round(time.time() - t0)})
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump({"stages": stages, "torch": torch.__version__,
                   "transformers": transformers.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
