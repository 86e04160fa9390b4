#!/usr/bin/env python3
"""Preprocessing goldens for tests/unit/preprocess_test.cc, from Pillow and transformers'
Gemma3ImageProcessorPil (the PIL backend — asserted below; v5's Gemma3ImageProcessor is the
torchvision one, ±1 off Pillow).

Writes tests/fixtures/preprocess/goldens.json (+ small .f32 arrays):
  resize:   sha256 of Pillow's BILINEAR resize (reducing_gap=None) of the RGB8 image to size × size,
            for procedural images of many shapes (formula below, reimplemented by the C++ test),
            2×2 grids of 240×160 frames, and every non-interlaced PNG fixture of tests/fixtures/images
  table:    float32 bit patterns of pixel_values for u8 = 0..255 (an image holding all 256 levels)
  processor: two small cases whose full pixel_values are stored (.f32, [n, 3, size, size])
  pan_and_scan: crop boxes from Gemma3ImageProcessorPil.pan_and_scan for the spec's examples, and
            the sha256 of pixel_values with do_pan_and_scan=True for two images
  cli_frames: the sha256 of pixel_values for a grid of four PNG fixtures (vlmserve-preprocess)

Run from the repository root:  python3 tools/golden/make_preprocess_goldens.py
"""
import hashlib
import json
import os

import numpy as np
import PIL
import transformers
from PIL import Image
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

OUT = os.path.join("tests", "fixtures", "preprocess")
IMAGES = os.path.join("tests", "fixtures", "images")
PAS = dict(pan_and_scan_min_crop_size=256, pan_and_scan_max_num_crops=4,
           pan_and_scan_min_ratio_to_activate=1.2)


def procedural(w, h, seed):
    """RGB8 [h, w, 3]: R = (7x + 3y + 11s) & 255, G = ((x*y >> 3) ^ s) & 255, B = ((x ^ y) + 5s) & 255."""
    x = np.arange(w, dtype=np.uint64)[None, :]
    y = np.arange(h, dtype=np.uint64)[:, None]
    s = np.uint64(seed)
    r = (x * np.uint64(7) + y * np.uint64(3) + s * np.uint64(11)) & np.uint64(255)
    g = (((x * y) >> np.uint64(3)) ^ s) & np.uint64(255)
    b = ((x ^ y) + s * np.uint64(5)) & np.uint64(255)
    return np.stack(np.broadcast_arrays(r, g, b), axis=-1).astype(np.uint8)


def grid(frames):
    fh, fw = frames[0].shape[:2]
    g = Image.new("RGB", (2 * fw, 2 * fh))  # black
    for i, f in enumerate(frames):
        g.paste(Image.fromarray(f), ((i % 2) * fw, (i // 2) * fh))
    return g


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def pil_resize(im, size):
    return np.asarray(im.resize((size, size), Image.BILINEAR, reducing_gap=None))


def processor(size):
    p = Gemma3ImageProcessorPil(size={"height": size, "width": size}, resample=2,
                                rescale_factor=1 / 255, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert type(p).__name__ == "Gemma3ImageProcessorPil"  # the PIL backend, not torchvision
    return p


def main():
    os.makedirs(OUT, exist_ok=True)
    g = {"made_by": "tools/golden/make_preprocess_goldens.py", "pillow": PIL.__version__,
         "transformers": transformers.__version__, "resize": [], "processor": [], "pan_and_scan": []}

    shapes = [(480, 320), (1920, 1080), (4000, 3000), (1, 4096), (4096, 1), (897, 895), (13, 7),
              (896, 896), (240, 160), (3, 3), (1, 1)]
    for i, (w, h) in enumerate(shapes):
        im = Image.fromarray(procedural(w, h, i))
        for size in (896, 56):
            g["resize"].append({"source": {"kind": "procedural", "width": w, "height": h, "seed": i},
                                "size": size, "sha256": sha(pil_resize(im, size))})
    for n in (1, 2, 3, 4):
        frames = [procedural(240, 160, 100 + k) for k in range(n)]
        gim = grid(frames)
        g["resize"].append({"source": {"kind": "grid", "frames": [[240, 160, 100 + k] for k in range(n)]},
                            "size": 896, "grid_sha256": sha(np.asarray(gim)),
                            "sha256": sha(pil_resize(gim, 896))})
    for f in sorted(os.listdir(os.path.join(IMAGES, "png"))):
        if not f.endswith("_p.png"):
            continue
        im = Image.open(os.path.join(IMAGES, "png", f)).convert("RGB")
        for size in (896, 14):
            g["resize"].append({"source": {"kind": "file", "path": "images/png/" + f}, "size": size,
                                "sha256": sha(pil_resize(im, size))})

    # u8 → float32: all 256 levels through the real processor, at the image's own size (no resize).
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    im = np.stack([levels, levels.T, levels[::-1]], axis=-1)
    pv = processor(16)(Image.fromarray(im), return_tensors="np")["pixel_values"][0]
    table = np.zeros(256, dtype=np.float32)
    table[levels.flatten()] = pv[0].flatten()
    assert np.array_equal(pv[1], table[im[:, :, 1]]) and np.array_equal(pv[2], table[im[:, :, 2]])
    g["table_bits"] = [int(b) for b in table.view(np.uint32)]

    def store(name, source, im, size, **kw):
        out = processor(size)(im, return_tensors="np", **kw)
        pv = out["pixel_values"].astype(np.float32)
        path = os.path.join(OUT, name + ".f32")
        pv.tofile(path)
        g["processor"].append({"name": name, "source": source, "size": size, "shape": list(pv.shape),
                               "num_crops": [int(n) for n in out["num_crops"]],
                               "file": "preprocess/" + name + ".f32"})

    store("small_37x23", {"kind": "procedural", "width": 37, "height": 23, "seed": 7},
          Image.fromarray(procedural(37, 23, 7)), 28)
    frames = [procedural(12, 8, 200 + k) for k in range(3)]
    store("grid3_12x8", {"kind": "grid", "frames": [[12, 8, 200 + k] for k in range(3)]}, grid(frames), 14)

    # Pan & scan: boxes (x, y, w, h) straight from the processor's own function.
    p = processor(28)
    for w, h in [(1920, 1080), (2000, 600), (3000, 500), (640, 480), (1024, 768), (1000, 1000),
                 (300, 200), (600, 1000), (1000, 3000), (257, 1000), (10000, 300)]:
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        crops = p.pan_and_scan(np.stack([yy, xx]), **PAS)
        boxes = [[int(c[1, 0, 0]), int(c[0, 0, 0]), int(c.shape[2]), int(c.shape[1])] for c in crops]
        g["pan_and_scan"].append({"width": w, "height": h, "boxes": boxes})
    for i, (w, h) in enumerate([(1920, 1080), (600, 1000)]):
        name = f"pan_scan_{w}x{h}"
        out = p(Image.fromarray(procedural(w, h, 50 + i)), return_tensors="np", do_pan_and_scan=True, **PAS)
        pv = out["pixel_values"].astype(np.float32)
        g["pan_and_scan_pixels"] = g.get("pan_and_scan_pixels", []) + [{
            "name": name, "source": {"kind": "procedural", "width": w, "height": h, "seed": 50 + i},
            "size": 28, "shape": list(pv.shape), "num_crops": [int(n) for n in out["num_crops"]],
            "sha256": sha(pv)}]

    # vlmserve-preprocess --frames (four PNG fixtures of one size) --size 56: the float32 file.
    files = ["images/png/rgb8_p.png", "images/png/gray8_p.png", "images/png/palette8_trns_p.png",
             "images/png/rgba16_p.png"]
    frames = [np.asarray(Image.open(os.path.join("tests", "fixtures", f)).convert("RGB")) for f in files]
    pv = processor(56)(grid(frames), return_tensors="np")["pixel_values"].astype(np.float32)
    g["cli_frames"] = {"frames": files, "size": 56, "shape": list(pv.shape), "sha256": sha(pv)}

    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump(g, f, indent=1)
    print(len(g["resize"]), "resize goldens,", len(g["processor"]), "processor arrays,",
          len(g["pan_and_scan"]), "pan & scan boxes")


if __name__ == "__main__":
    main()
