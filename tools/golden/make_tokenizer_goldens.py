#!/usr/bin/env python3
"""Tokenizer goldens for tests/unit/tokenizer_test.cc, made by HF tokenizers (tools/requirements.txt).

Writes, under tests/fixtures/tokenizer/:
  gemma3_cases.jsonl   cases for the real Gemma 3 tokenizer.json (../shared/gemma3/)
  tiny/tokenizer.json  a tiny tokenizer trained with HF tokenizers, in Gemma 3's exact format
                       (same normalizer, pre-tokenizer, decoder, post-processor, byte fallback,
                       special and non-special added tokens incl. newline runs)
  tiny_cases.jsonl     cases for the tiny tokenizer (tests that must always run)

Each line is one case:
  {"cat": C, "text": T, "ids": [...]}                 encode(T, add_special_tokens=False) == ids
      optional "decode": D  when decode(ids, skip_special_tokens=False) != T
      optional "decode_skip": D  when decode(ids, skip_special_tokens=True) differs from that
  {"cat": "long", "start": S, "count": N, "sep": P, "bytes": B, "n_ids": N, "ids_sha256": H}
      T = concat over k < N of (text of non-"added" case (S + k) mod their count, in file
      order) + P; H = sha256 of the ids written as "1,2,3" (keeps the file small)
  {"cat": "decode", "ids": [...], "text": D, "text_skip": D2}   decode of arbitrary id sequences
  {"cat": "meta", ...}                                          versions and category counts
Strings are generated from a fixed seed, so rerunning reproduces the files exactly.

Run from the repository root:  python3 tools/golden/make_tokenizer_goldens.py [--shared ../shared]
"""
import argparse
import hashlib
import json
import os
import random

import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer

OUT = os.path.join("tests", "fixtures", "tokenizer")
BUTTONS = ["up", "down", "left", "right", "a", "b", "start", "select", "l", "r", "none"]
REASONS = ["clear_path", "avoid_enemy", "talk_to_npc", "open_menu", "pick_item", "wait", "explore"]
CONTEXTS = ["navigation", "battle", "dialog", "menu", "inventory", "cutscene"]
WORDS = ("the player stands near a tree and the path north is blocked by water so move east "
         "then take the stairs down into the cave where a trainer waits Pokémon Zelda Mario "
         "HP 42/50 level 7 score: 12,345 time 03:21 frame t0 t1 t2 t3 grid").split()


def rand_words(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))


def action_json(r, pretty=False):
    a = {"button": r.choice(BUTTONS), "reasoning": r.choice(REASONS), "context": r.choice(CONTEXTS)}
    if pretty:
        return json.dumps(a, indent=r.choice([1, 2, 4]))
    return json.dumps(a, separators=(",", ":")) if r.random() < 0.7 else json.dumps(a)


def cat_prompts(r):
    out = []
    for i in range(260):
        k = i % 6
        if k == 0:
            out.append(action_json(r, pretty=r.random() < 0.3))
        elif k == 1:
            out.append(f"You are playing a Game Boy Advance game. The frames t0 t1 / t2 t3 show "
                       f"the last {r.randint(2, 4)} steps. {rand_words(r, r.randint(3, 20))}. "
                       f"Answer with JSON: {action_json(r)}")
        elif k == 2:
            out.append(f"<start_of_turn>user\n{rand_words(r, r.randint(1, 12))}<end_of_turn>\n"
                       f"<start_of_turn>model\n{action_json(r)}<end_of_turn>\n")
        elif k == 3:
            out.append(f"Step {r.randint(0, 99999)}: press {r.choice(BUTTONS).upper()}! "
                       f"({r.random():.4f}) — {rand_words(r, 5)}?")
        elif k == 4:
            out.append("def act(obs):\n    if obs['hp'] < %d:\n        return 'b'\n    return '%s'\n"
                       % (r.randint(1, 99), r.choice(BUTTONS)))
        else:
            out.append(" ".join(r.choice(WORDS).capitalize() for _ in range(r.randint(1, 30))))
    return out


def cat_whitespace(r):
    pieces = [" ", "  ", "\n", "\n\n", "\t", "\r\n", "\r", "\u00a0", "\u3000", "\u2009", "\u200b",
              "word", "x", ".", "\u2581"]
    out = []
    for i in range(260):
        if i < 40:  # single runs, around the 31-newline added-token boundary
            ch = ["\n", "\t", " ", "\u2581"][i % 4]
            out.append(ch * (1 + i % 40 if i % 4 else 28 + i // 4 % 8))
        else:
            s = "".join(r.choice(pieces) * (r.randint(1, 40) if r.random() < 0.2 else 1)
                        for _ in range(r.randint(1, 30)))
            out.append(s)
    return out


def cat_cjk(r):
    ranges = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3),
              (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0xFF00, 0xFFEF), (0x3000, 0x303F)]
    sentences = ["我们今天去公园玩。", "東京は日本の首都です。", "ポケモンをつかまえた！", "안녕하세요, 세계!",
                 "右に移動してください", "选择下一个按钮：右"]
    out = []
    for i in range(260):
        if i % 5 == 0:
            out.append(r.choice(sentences) + " " + r.choice(sentences))
        else:
            lo, hi = r.choice(ranges)
            s = "".join(chr(r.randint(lo, hi)) for _ in range(r.randint(1, 25)))
            out.append(s if r.random() < 0.5 else f"{rand_words(r, 2)} {s} {rand_words(r, 1)}")
    return out


def cat_emoji(r):
    out = []
    for i in range(260):
        kind = i % 6
        base = lambda: chr(r.randint(0x1F300, 0x1FAFF))
        if kind == 0:
            s = "".join(base() for _ in range(r.randint(1, 8)))
        elif kind == 1:  # ZWJ sequences
            s = "\u200d".join(base() for _ in range(r.randint(2, 4)))
        elif kind == 2:  # skin tones and VS16
            s = "".join(base() + chr(r.randint(0x1F3FB, 0x1F3FF)) + ("\ufe0f" if r.random() < 0.5 else "")
                        for _ in range(r.randint(1, 4)))
        elif kind == 3:  # flags: regional indicator pairs, real and not
            s = "".join(chr(0x1F1E6 + r.randint(0, 25)) + chr(0x1F1E6 + r.randint(0, 25))
                        for _ in range(r.randint(1, 5)))
        elif kind == 4:  # keycaps and tag sequences
            s = f"{r.randint(0, 9)}\ufe0f\u20e3" + "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"
        else:
            s = "👨‍👩‍👧‍👦 " + rand_words(r, 3) + " 🇯🇵🇺🇸 ❤️‍🔥 🏳️‍🌈 " + base()
        out.append(s)
    return out


def cat_scripts(r):
    ranges = [(0x0900, 0x097F), (0x0600, 0x06FF), (0x0590, 0x05FF), (0x0E00, 0x0E7F),
              (0x0400, 0x04FF), (0x0370, 0x03FF), (0x0530, 0x058F), (0x10A0, 0x10FF),
              (0x1200, 0x137F), (0x0B80, 0x0BFF), (0x0980, 0x09FF), (0x0F00, 0x0FFF),
              (0x1800, 0x18AF), (0x2200, 0x22FF), (0x2500, 0x257F), (0x1D400, 0x1D7FF)]
    out = []
    for i in range(260):
        if i % 4 == 0:  # combining marks on Latin letters, NFC and NFD forms
            s = "".join(r.choice("aeiouAEIOUnc") + "".join(chr(r.randint(0x0300, 0x036F))
                        for _ in range(r.randint(1, 4))) for _ in range(r.randint(1, 10)))
            out.append(s + " café cafe\u0301 naïve")
        else:
            lo, hi = r.choice(ranges)
            out.append("".join(chr(r.randint(lo, hi)) for _ in range(r.randint(1, 30))))
    return out


def cat_control(r):
    ranges = [(0x00, 0x1F), (0x7F, 0x9F), (0xE000, 0xF8FF), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD),
              (0xFDD0, 0xFDEF), (0xFFF9, 0xFFFF), (0x200B, 0x200F), (0x2028, 0x202E), (0xFEFF, 0xFEFF)]
    out = []
    for i in range(260):
        lo, hi = r.choice(ranges)
        s = "".join(chr(r.randint(lo, hi)) for _ in range(r.randint(1, 12)))
        out.append(s if i % 3 else f"{rand_words(r, 2)}{s}{rand_words(r, 1)}")
    return out


def cat_added(r, added):
    out = []
    for a in added:
        out.append(a)  # alone
    for a in added:   # inside words, and cut short
        k = r.randint(0, 3)
        if k == 0:
            out.append("abc" + a + "def")
        elif k == 1:
            out.append(rand_words(r, 1) + a + " " + a + rand_words(r, 1))
        elif k == 2:
            out.append("x" + a[:-1] + "y" + a)
        else:
            out.append(a + a + "\n" + a)
    return out


def long_cases(r, cases, n=200):
    """Recipes (start, count, sep) over the non-"added" cases in file order: the text is
    short[(start + k) % len(short)]["text"] + sep for k < count, 10-100 kB in all."""
    short = [c for c in cases if c["cat"] != "added"]
    out = []
    for _ in range(n):
        target = r.randint(10_000, 100_000)
        start, sep = r.randrange(len(short)), r.choice(["", " ", "\n", "\n\n", ". "])
        count, size = 0, 0
        while size < target:
            size += len(short[(start + count) % len(short)]["text"].encode()) + len(sep.encode())
            count += 1
        out.append((start, count, sep))
    return out


def long_text(cases, start, count, sep):
    short = [c for c in cases if c["cat"] != "added"]
    return "".join(short[(start + k) % len(short)]["text"] + sep for k in range(count))


def decode_cases(r, tok, n_vocab, n_total):
    byte_ids = [tok.token_to_id(f"<0x{b:02X}>") for b in range(256)]
    special = [i for i in range(n_total) if tok.id_to_token(i) and tok.id_to_token(i) in
               ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                "<start_of_image>", "<end_of_image>", "<image_soft_token>")]
    valid_utf8 = ["€", "é", "😀", "日", "\x00", "A"]
    out = []
    for _ in range(300):
        ids = []
        for _ in range(r.randint(1, 12)):
            k = r.random()
            if k < 0.3:
                ids.append(r.randrange(n_vocab))
            elif k < 0.5:  # a byte run that is valid UTF-8, possibly cut short
                b = r.choice(valid_utf8).encode()
                if r.random() < 0.3:
                    b = b[:-1] or b
                ids += [byte_ids[x] for x in b]
            elif k < 0.6:
                ids.append(byte_ids[r.randrange(256)])
            elif k < 0.75 and special:
                ids.append(r.choice(special))
            elif k < 0.85:
                ids.append(r.randrange(n_total, n_total + 80))  # no token: dropped
            else:
                ids.append(r.randrange(n_total))
        out.append(ids)
    return out


def make(tok, texts_by_cat, added, path, seed):
    r = random.Random(seed)
    cases = []
    for cat, texts in texts_by_cat.items():
        for t in texts:
            cases.append({"cat": cat, "text": t})
    for t in cat_added(r, added):
        cases.append({"cat": "added", "text": t})
    for c in cases:
        ids = tok.encode(c["text"], add_special_tokens=False).ids
        c["ids"] = ids
        d = tok.decode(ids, skip_special_tokens=False)
        if d != c["text"]:
            c["decode"] = d
        ds = tok.decode(ids, skip_special_tokens=True)
        if ds != d:
            c["decode_skip"] = ds
    longs = []
    for start, count, sep in long_cases(r, cases):
        text = long_text(cases, start, count, sep)
        ids = tok.encode(text, add_special_tokens=False).ids
        longs.append({"cat": "long", "start": start, "count": count, "sep": sep,
                      "bytes": len(text.encode()),
                      "n_ids": len(ids),
                      "ids_sha256": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()})
    n_vocab = tok.get_vocab_size(with_added_tokens=False)
    n_total = tok.get_vocab_size(with_added_tokens=True)
    decs = [{"cat": "decode", "ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
             "text_skip": tok.decode(ids, skip_special_tokens=True)}
            for ids in decode_cases(r, tok, n_vocab, n_total)]
    bos = tok.encode("", add_special_tokens=True).ids
    counts = {}
    for c in cases + longs + decs:
        counts[c["cat"]] = counts.get(c["cat"], 0) + 1
    meta = {"cat": "meta", "tokenizers": tokenizers.__version__, "bos_ids": bos, "counts": counts,
            "script": "tools/golden/make_tokenizer_goldens.py"}
    with open(path, "w", encoding="utf-8") as f:
        for c in [meta] + cases + longs + decs:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(path, counts)


def train_tiny(corpus, vocab_size=900, limit_alphabet=120, isolate=(), words=False):
    """A tiny BPE in Gemma 3's exact tokenizer.json format (see the module docstring).

    Options for tools/demo/train.py, applied while training only (the tokenizer.json keeps Gemma's
    pre-tokenizer, and since no learned merge crosses these cuts, it tokenizes the same):
    `isolate`: characters no merge may contain ('"', so that JSON cut at the grammar's forced
    boundaries tokenizes as the whole text does); `words`: no merge spans a space (Gemma's Split on
    " " sees "\u2581" after the normaliser, so by itself it lets merges cross words)."""
    trainer_tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Replace(" ", "\u2581")
    splits = [pre_tokenizers.Split(" ", "merged_with_previous")]
    if words:
        splits.append(pre_tokenizers.Split("\u2581", "merged_with_previous"))
    splits += [pre_tokenizers.Split(c, "isolated") for c in isolate]
    trainer_tok.pre_tokenizer = splits[0] if len(splits) == 1 else pre_tokenizers.Sequence(splits)
    trainer_tok.train_from_iterator(
        corpus, BpeTrainer(vocab_size=vocab_size, limit_alphabet=limit_alphabet, show_progress=False))
    trained = json.loads(trainer_tok.to_str())
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = specials + [f"<0x{b:02X}>" for b in range(256)]
    turn = ["<start_of_turn>", "<end_of_turn>"]
    newlines = ["\n" * k for k in range(1, 32)]
    tags = ["<b>", "</b>", "<unused0>", "<unused1>", "\u2581\u2581", "\u2581\u2581\u2581"]
    image = ["<start_of_image>", "<end_of_image>"]
    vocab += turn + newlines + tags + image
    for t in sorted(trained["model"]["vocab"], key=lambda t: trained["model"]["vocab"][t]):
        if t not in vocab:
            vocab.append(t)
    merges = [m for m in trained["model"]["merges"]]
    ids = {t: i for i, t in enumerate(vocab)}
    added = []
    for t in specials + turn + image:
        added.append({"id": ids[t], "content": t, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    for t in newlines + tags:
        added.append({"id": ids[t], "content": t, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": False})
    added.append({"id": len(vocab), "content": "<image_soft_token>", "single_word": False,
                  "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    added.sort(key=lambda a: a["id"])
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                          "invert": False},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": ids, "merges": merges},
    }
    return json.dumps(doc, ensure_ascii=False, indent=None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join("..", "shared"))
    args = ap.parse_args()
    os.makedirs(os.path.join(OUT, "tiny"), exist_ok=True)
    r = random.Random(20261128)
    texts = {"prompt": cat_prompts(r), "whitespace": cat_whitespace(r), "cjk": cat_cjk(r),
             "emoji": cat_emoji(r), "scripts": cat_scripts(r), "control": cat_control(r)}

    gemma = Tokenizer.from_file(os.path.join(args.shared, "gemma3", "tokenizer.json"))
    with open(os.path.join(args.shared, "gemma3", "tokenizer.json"), encoding="utf-8") as f:
        added = [a["content"] for a in json.load(f)["added_tokens"]]
    make(gemma, texts, added, os.path.join(OUT, "gemma3_cases.jsonl"), seed=1)

    # Trained on the Latin-script categories with a small alphabet: merges for common words, byte
    # fallback for everything else.
    tiny_json = train_tiny(texts["prompt"] + texts["whitespace"] + texts["scripts"][:40])
    tiny_path = os.path.join(OUT, "tiny", "tokenizer.json")
    with open(tiny_path, "w", encoding="utf-8") as f:
        f.write(tiny_json)
    tiny = Tokenizer.from_file(tiny_path)
    tiny_added = [a["content"] for a in json.loads(tiny_json)["added_tokens"]]
    small = {k: v[:60] for k, v in texts.items()}
    make(tiny, small, tiny_added, os.path.join(OUT, "tiny_cases.jsonl"), seed=2)


if __name__ == "__main__":
    main()
