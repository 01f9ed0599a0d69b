#!/usr/bin/env python3
"""Draws examples/data/scene.png (224×224 RGB), the picture the vision example reads.

A procedural scene (sky gradient, sun, hills, a house, a striped field) so that the example
needs no third-party image; standard library only (zlib, struct).
"""
import math
import os
import struct
import zlib

SIZE = 224


def pixel(x, y):
    # sky gradient
    r, g, b = 90 + y // 3, 150 + y // 4, 235
    # sun
    if (x - 170) ** 2 + (y - 50) ** 2 < 22 ** 2:
        return 250, 220, 60
    # hills
    hill = 150 + 18 * math.sin(x / 23.0) + 10 * math.sin(x / 7.0 + 1.3)
    if y > hill:
        r, g, b = 60, 140 + int(20 * math.sin(x / 11.0)), 60
        if y > 185 and (x // 8 + y // 8) % 2 == 0:  # striped field
            r, g, b = 200, 170, 80
    # house: walls, roof, door
    if 40 <= x < 100 and 120 <= y < 170:
        r, g, b = 200, 60, 50
        if 62 <= x < 78 and 140 <= y < 170:
            r, g, b = 90, 50, 20
    if 100 <= y < 120 and abs(x - 70) < (y - 100) * 1.6:
        r, g, b = 110, 40, 30
    return min(r, 255), min(g, 255), min(b, 255)


def main():
    rows = b"".join(b"\x00" + bytes(c for x in range(SIZE) for c in pixel(x, y)) for y in range(SIZE))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "data", "scene.png")
    with open(path, "wb") as f:
        f.write(png)
    print("wrote", os.path.normpath(path), len(png), "bytes")


if __name__ == "__main__":
    main()
