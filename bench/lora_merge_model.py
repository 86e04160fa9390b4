#!/usr/bin/env python3
"""A base and a LoRA adapter at the published 4B model's widths, for timing the merge at load
(bench/results/*-lora): the real config with 2 decoder and 2 vision layers (the merge cost is per
layer; scale by 34 and 27), random bf16 weights, and a PEFT all-linear r=16 adapter with random
non-zero B. Needs the tools venv with peft (tools/requirements.txt) and ../shared/gemma3.

  python3 bench/lora_merge_model.py OUT_DIR      # writes OUT_DIR/base and OUT_DIR/adapter
  /usr/bin/time -f "%e s %M KB" build/bin/vlmserve-inspect OUT_DIR/base --adapter OUT_DIR/adapter
"""
import json
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
cfg = json.load(open(os.path.join(here, "..", "..", "shared", "gemma3", "config-4b-it.json")))
cfg["text_config"]["num_hidden_layers"] = 2
cfg["text_config"].pop("layer_types", None)
cfg["vision_config"]["num_hidden_layers"] = 2
c = Gemma3Config(**{k: v for k, v in cfg.items() if k != "architectures"})
torch.manual_seed(0)
m = Gemma3ForConditionalGeneration(c).to(torch.bfloat16)
m.save_pretrained(os.path.join(out, "base"))
pm = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
with torch.no_grad():
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            p.normal_(0, 0.01)
pm.save_pretrained(os.path.join(out, "adapter"))
print("wrote", out)
