#!/usr/bin/env python3
"""Image-decoding fixtures for tests/unit/image_decode_test.cc.

Writes tests/fixtures/images/:
  png/*.png    every PNG colour type × bit depth, plain and Adam7-interlaced, with tRNS, gAMA, iCCP
               and tEXt chunks and all five row filters — written by the small PNG encoder below,
               since Pillow cannot write 2/4-bit grey or 16-bit colour
  jpeg/*.jpg   baseline 4:2:0 / 4:2:2 / 4:4:4, progressive, greyscale, restart markers, arithmetic
               coding, an EXIF orientation tag (by Pillow and by libjpeg-turbo's cjpeg)
  bad/*        crafted rejects: a 65-byte PNG declaring 10^6 x 10^6, 41-byte PNGs whose ancillary
               chunk (tEXt, zTXt, iTXt, sPLT, pCAL, sCAL, iCCP) declares ~2 GiB, a JPEG declaring 65500 x 65500,
               CMYK, 12-bit precision, 0x0 PNG, a PNG with a bad CRC (the 1000-scan progressive
               JPEG is made by the C++ test itself with libjpeg: cjpeg caps scripts at 100 scans)
  goldens.json per file: size and the sha256 of the RGB8 pixels from Image.open(f).convert("RGB")
               under two Pillows — PyPI Pillow (this venv) and Debian's python3-pil (run with
               /usr/bin/python3, built on the same libjpeg-turbo as vlmserve) — with both versions,
               and for JPEGs the largest per-channel difference between the two.
  jpeg/*.pypi.rgb  PyPI Pillow's decoded pixels of each JPEG (raw RGB8), for the C++ test's
               stated-difference check.

Needs: the venv of tools/requirements.txt, /usr/bin/python3 with python3-pil, and cjpeg
(Debian libjpeg-turbo-progs). Run from the repository root: python3 tools/golden/make_image_goldens.py
"""
import hashlib
import io
import json
import os
import random
import struct
import subprocess
import zlib

import PIL
from PIL import Image

OUT = os.path.join("tests", "fixtures", "images")


# ---- a minimal PNG encoder (all colour types, bit depths, filters, Adam7) ----------------------

def chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_samples(samples, depth):
    """A row of integer samples → bytes at `depth` bits per sample (big-endian, MSB first)."""
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_row(ftype, row, prev, bpp):
    out = bytearray([ftype])
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i] if prev else 0
        c = prev[i - bpp] if prev and i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ftype]
        out.append((x - pred) & 0xFF)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def encode_png(w, h, color_type, depth, pixels, interlace=False, palette=None, trns=None, extra=()):
    """pixels[y][x] is a tuple of samples (channels by colour type)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    bpp = max(1, channels * depth // 8)
    raw, r = bytearray(), random.Random(w * 1000 + h + color_type * 10 + depth)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for (x0, y0, dx, dy) in passes:
        xs = list(range(x0, w, dx))
        prev = None
        for y in range(y0, h, dy):
            if not xs:
                continue
            row = pack_samples([s for x in xs for s in pixels[y][x]], depth)
            raw += filter_row(r.randrange(5), row, prev, bpp)
            prev = row
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace)))
    for kind, data in extra:
        png += chunk(kind, data)
    if palette is not None:
        png += chunk(b"PLTE", b"".join(bytes(c) for c in palette))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b"")
    return png


def png_cases():
    cases = []
    r = random.Random(7)
    gamma = (b"gAMA", struct.pack(">I", 45455))
    iccp = (b"iCCP", b"fake profile\x00\x00" + zlib.compress(b"not really an ICC profile" * 4))
    text = (b"tEXt", b"Comment\x00made by make_image_goldens.py")
    for interlace in (False, True):
        w, h = (37, 23) if not interlace else (13, 11)
        tag = "i" if interlace else "p"
        for depth in (1, 2, 4, 8, 16):  # grey
            m = (1 << depth) - 1
            px = [[(r.randint(0, m),) for _ in range(w)] for _ in range(h)]
            cases.append((f"gray{depth}_{tag}", encode_png(w, h, 0, depth, px, interlace)))
        for depth in (8, 16):
            m = (1 << depth) - 1
            px = [[(r.randint(0, m),) for _ in range(w)] for _ in range(h)]
            trns = struct.pack(">H", px[0][0][0])
            cases.append((f"gray{depth}_trns_{tag}", encode_png(w, h, 0, depth, px, interlace, trns=trns)))
            px = [[tuple(r.randint(0, m) for _ in range(3)) for _ in range(w)] for _ in range(h)]
            cases.append((f"rgb{depth}_{tag}", encode_png(w, h, 2, depth, px, interlace, extra=(gamma, iccp, text))))
            cases.append((f"rgb{depth}_trns_{tag}", encode_png(w, h, 2, depth, px, interlace,
                                                               trns=struct.pack(">HHH", *px[0][0]))))
            px = [[tuple(r.randint(0, m) for _ in range(2)) for _ in range(w)] for _ in range(h)]
            cases.append((f"gray_alpha{depth}_{tag}", encode_png(w, h, 4, depth, px, interlace)))
            px = [[tuple(r.randint(0, m) for _ in range(4)) for _ in range(w)] for _ in range(h)]
            cases.append((f"rgba{depth}_{tag}", encode_png(w, h, 6, depth, px, interlace, extra=(gamma,))))
        for depth in (1, 2, 4, 8):  # palette, with and without tRNS
            n = 1 << depth
            pal = [(r.randrange(256), r.randrange(256), r.randrange(256)) for _ in range(n)]
            px = [[(r.randrange(n),) for _ in range(w)] for _ in range(h)]
            cases.append((f"palette{depth}_{tag}", encode_png(w, h, 3, depth, px, interlace, palette=pal)))
            trns = bytes(r.randrange(256) for _ in range(min(n, 5)))
            cases.append((f"palette{depth}_trns_{tag}",
                          encode_png(w, h, 3, depth, px, interlace, palette=pal, trns=trns)))
    # Shapes at the edges.
    cases.append(("rgb8_1x1", encode_png(1, 1, 2, 8, [[(1, 2, 3)]])))
    cases.append(("rgb8_1x64_i", encode_png(1, 64, 2, 8, [[(y, 255 - y, 7)] for y in range(64)], True)))
    cases.append(("rgb8_64x1_i", encode_png(64, 1, 2, 8, [[(x, 3, 255 - x) for x in range(64)]], True)))
    return cases


# ---- JPEGs ------------------------------------------------------------------------------------

def test_picture(w, h, seed):
    """A gradient with noise and sharp edges: exercises every DCT frequency band."""
    r = random.Random(seed)
    im = Image.new("RGB", (w, h))
    im.putdata([(x * 255 // max(1, w - 1), y * 255 // max(1, h - 1),
                 (128 if (x // 8 + y // 8) % 2 else 30) + r.randint(-25, 25))
                for y in range(h) for x in range(w)])
    return im


def jpeg_cases(tmp):
    cases = []
    pic = test_picture(64, 48, 1)
    odd = test_picture(37, 23, 2)

    def pil(name, im, **kw):
        buf = io.BytesIO()
        im.save(buf, "JPEG", **kw)
        cases.append((name, buf.getvalue()))

    pil("baseline_420", pic, quality=90)
    pil("baseline_422", pic, quality=85, subsampling=1)
    pil("baseline_444", pic, quality=95, subsampling=0)
    pil("progressive_420", pic, quality=80, progressive=True)
    pil("odd_size_420", odd, quality=90)
    pil("gray", pic.convert("L"), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW; Image.open ignores it
    pil("exif_orientation_6", pic, quality=90, exif=exif.tobytes())
    ppm = os.path.join(tmp, "pic.ppm")
    pic.save(ppm)
    for name, args in (("restart_markers", ["-restart", "1"]), ("arithmetic", ["-arithmetic"])):
        out = subprocess.run(["cjpeg", "-quality", "90", *args, ppm], capture_output=True, check=True)
        cases.append((name, out.stdout))
    return cases


def bad_cases(tmp):
    bad = []
    # A 65-byte PNG that declares 10^6 x 10^6 RGBA: header, a tiny IDAT, IEND.
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10**6, 10**6, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00")[:2]) + chunk(b"IEND", b""))
    bad.append(("png_1e6_bomb.png", bomb))
    zero = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    bad.append(("png_0x0.png", zero))
    # 41-byte chunk bombs: a 1x1 IHDR, then the header of an ancillary chunk declaring ~2 GiB with
    # no data after it. libpng 1.6.39 buffers a handled chunk at its declared length (a benign
    # error it only warns about), so each of these used to cost 2 GiB and seconds of CPU.
    for name in (b"tEXt", b"zTXt", b"iTXt", b"sPLT", b"pCAL", b"sCAL", b"iCCP"):
        head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        bad.append((f"png_{name.decode()}_2g.png", head + struct.pack(">I", 0x7FFFFFF0) + name))
    good = encode_png(5, 4, 2, 8, [[(x, y, 9) for x in range(5)] for y in range(4)])
    i = good.index(b"IHDR") + 4 + 13  # IHDR's CRC field
    bad.append(("png_bad_crc.png", good[:i] + bytes([good[i] ^ 0x40]) + good[i + 1:]))
    i = good.index(b"IDAT") + 6        # inside the compressed data: zlib fails before the CRC
    bad.append(("png_bad_idat.png", good[:i] + bytes([good[i] ^ 0x40]) + good[i + 1:]))
    # A JPEG declaring 65500 x 65500 (SOF0 patched).
    buf = io.BytesIO()
    test_picture(16, 16, 3).save(buf, "JPEG", quality=80)
    j = bytearray(buf.getvalue())
    sof = j.index(b"\xff\xc0")
    j[sof + 5:sof + 9] = struct.pack(">HH", 65500, 65500)
    bad.append(("jpeg_65500.jpg", bytes(j)))
    j12 = bytearray(buf.getvalue())
    j12[sof + 4] = 12  # sample precision 12
    bad.append(("jpeg_12bit.jpg", bytes(j12)))
    cmyk = io.BytesIO()
    test_picture(16, 16, 4).convert("CMYK").save(cmyk, "JPEG", quality=80)
    bad.append(("jpeg_cmyk.jpg", cmyk.getvalue()))
    return bad


DECODE_SNIPPET = r"""
import hashlib, json, sys, PIL
from PIL import Image
out = {"pillow": PIL.__version__, "files": {}}
for path in sys.argv[1:]:
    im = Image.open(path)
    rgb = im.convert("RGB")
    out["files"][path] = [rgb.size[0], rgb.size[1], hashlib.sha256(rgb.tobytes()).hexdigest(), im.mode]
print(json.dumps(out))
"""


def decode_with(python, paths):
    out = subprocess.run([python, "-c", DECODE_SNIPPET, *paths], capture_output=True, check=True, text=True)
    return json.loads(out.stdout)


def main():
    import tempfile
    for sub in ("png", "jpeg", "bad"):
        os.makedirs(os.path.join(OUT, sub), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name, data in png_cases():
            files.append(os.path.join(OUT, "png", name + ".png"))
            open(files[-1], "wb").write(data)
        jpegs = []
        for name, data in jpeg_cases(tmp):
            jpegs.append(os.path.join(OUT, "jpeg", name + ".jpg"))
            open(jpegs[-1], "wb").write(data)
        bad = bad_cases(tmp)
        for name, data in bad:
            open(os.path.join(OUT, "bad", name), "wb").write(data)
    pypi = decode_with("python3", files + jpegs)
    debian = decode_with("/usr/bin/python3", files + jpegs)
    goldens = {"made_by": "tools/golden/make_image_goldens.py", "pillow_pypi": pypi["pillow"],
               "pillow_debian": debian["pillow"], "files": {}}
    worst = 0
    for path in files + jpegs:
        w, h, hp, mode = pypi["files"][path]
        _, _, hd, _ = debian["files"][path]
        entry = {"width": w, "height": h, "mode": mode, "sha256_pypi": hp, "sha256_debian": hd}
        if path.endswith(".jpg"):
            a = Image.open(path).convert("RGB").tobytes()
            open(path[:-4] + ".pypi.rgb", "wb").write(a)
            b = subprocess.run(["/usr/bin/python3", "-c",
                                "import sys; from PIL import Image; sys.stdout.buffer.write("
                                "Image.open(sys.argv[1]).convert('RGB').tobytes())", path],
                               capture_output=True, check=True).stdout
            entry["max_diff_debian_vs_pypi"] = max(abs(x - y) for x, y in zip(a, b))
            worst = max(worst, entry["max_diff_debian_vs_pypi"])
        goldens["files"][os.path.relpath(path, OUT)] = entry
    goldens["jpeg_max_diff_debian_vs_pypi"] = worst
    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump(goldens, f, indent=1, sort_keys=True)
    same = sum(1 for e in goldens["files"].values() if e["sha256_pypi"] == e["sha256_debian"])
    print(f"{len(goldens['files'])} files; Pillow {pypi['pillow']} and {debian['pillow']} agree on {same}; "
          f"JPEG max diff {worst}")
    for p, e in goldens["files"].items():
        if e["sha256_pypi"] != e["sha256_debian"]:
            print("  differ:", p, e["mode"], e.get("max_diff_debian_vs_pypi"))


if __name__ == "__main__":
    main()
