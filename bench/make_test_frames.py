#!/usr/bin/env python3
"""Writes four 240x160 PNG frames (the GBA screen size) of a moving square on a checkered
gradient, for load tests with real encoded frames (vlmserve-bench --frames). Standard library only.

  bench/make_test_frames.py OUT_DIR     → OUT_DIR/t0.png … t3.png (≈84 KB each)
"""
import os
import struct
import sys
import zlib


def png(w, h, pix):
    raw = b"".join(b"\x00" + bytes(pix[y * w * 3:(y + 1) * w * 3]) for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for t in range(4):
        pix = bytearray(240 * 160 * 3)
        for y in range(160):
            for x in range(240):
                square = 40 + 30 * t <= x < 70 + 30 * t and 60 <= y < 90
                i = (y * 240 + x) * 3
                pix[i:i + 3] = bytes((250, 30, 30)) if square else bytes(
                    (x % 256, y % 256, 128 if (x // 16 + y // 16) % 2 else 90))
        with open(os.path.join(out, f"t{t}.png"), "wb") as f:
            f.write(png(240, 160, pix))


if __name__ == "__main__":
    main()
