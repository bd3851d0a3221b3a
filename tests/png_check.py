#!/usr/bin/env python3
"""png_check.py - reads a PNG with nothing but zlib and numpy (independent
of the program that drew it) and prints what tests/test_plot.sh checks.

usage: png_check.py FILE.png [#rrggbb ...]

Prints one JSON object: width and height (IHDR), colour_type, the number
of distinct colours, the fraction of non-white pixels, and for each colour
given the number of pixels within 12 of it on every channel. Exits 1 with
one line on anything that is not a whole, valid 8-bit non-interlaced RGB or
RGBA PNG: signature, chunk CRCs, IHDR, the IDAT stream's length, filter
types.
"""
import json
import struct
import sys
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fail(msg):
    print(f"png_check: {msg}")
    sys.exit(1)


def chunks(data):
    pos = 8
    while pos + 12 <= len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if len(body) != n or pos + 12 + n > len(data):
            fail(f"chunk {kind!r} cut short")
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        if zlib.crc32(kind + body) != crc:
            fail(f"chunk {kind!r}: CRC mismatch")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + n
    fail("no IEND chunk")


def unfilter(raw, w, h, bpp):
    """The image rows (h, w * bpp) from the filtered scanlines (PNG spec 9)."""
    stride = w * bpp
    if len(raw) != h * (stride + 1):
        fail(f"IDAT holds {len(raw)} bytes, {h * (stride + 1)} expected")
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum per channel
            cur = np.empty_like(line)
            for c in range(bpp):
                cur[c::bpp] = np.cumsum(line[c::bpp]) % 256
        elif f == 2:  # Up
            cur = (line + prev) % 256
        elif f in (3, 4):  # Average, Paeth: byte by byte
            b, cur = prev.tolist(), line.tolist()
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                if f == 3:
                    cur[i] = (cur[i] + (left + b[i]) // 2) % 256
                else:
                    ul = b[i - bpp] if i >= bpp else 0
                    p = left + b[i] - ul
                    pa, pb, pc = abs(p - left), abs(p - b[i]), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else b[i] if pb <= pc else ul
                    cur[i] = (cur[i] + pred) % 256
            cur = np.array(cur, np.int64)
        else:
            fail(f"row {y}: filter type {f}")
        out[y] = cur
        prev = cur
    return out


def main():
    if len(sys.argv) < 2:
        fail("usage: png_check.py FILE.png [#rrggbb ...]")
    data = open(sys.argv[1], "rb").read()
    if data[:8] != SIGNATURE:
        fail("no PNG signature")
    ihdr, idat = None, b""
    for kind, body in chunks(data):
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    if not ihdr:
        fail("no IHDR chunk")
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        fail(f"bit depth {depth}, colour type {ctype}, interlace {interlace}: not 8-bit RGB(A)")
    bpp = 3 if ctype == 2 else 4
    px = unfilter(zlib.decompress(idat), w, h, bpp).reshape(h, w, bpp)[:, :, :3].astype(np.int64)
    packed = (px[:, :, 0] << 16) | (px[:, :, 1] << 8) | px[:, :, 2]
    info = {
        "width": w,
        "height": h,
        "colour_type": ctype,
        "colours": int(len(np.unique(packed))),
        "ink": float(np.mean(packed != 0xFFFFFF)),
    }
    for hexc in sys.argv[2:]:
        rgb = np.array([int(hexc.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)])
        info[hexc] = int(np.sum(np.all(np.abs(px - rgb) <= 12, axis=2)))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
