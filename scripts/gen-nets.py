#!/usr/bin/env python3
"""Writes a synthetic nets file (prefix,pop,pop,pop) for load and speed measurements.

usage: gen-nets.py COUNT [SEED] > nets.csv

Deterministic for a seed. Prefixes are random IPv4 /12../24 (about 85 %) and IPv6 /32../48,
unique, and may nest (as real measured maps do). Each ranks three of eight PoPs.
"""
import random
import sys

count = int(sys.argv[1])
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
pops = ["ams", "iad", "sin", "fra", "lax", "gru", "nrt", "syd"]
seen = set()
out = sys.stdout
while len(seen) < count:
    if rng.random() < 0.85:
        plen = rng.choice([12, 16, 18, 20, 22, 24, 24, 24, 24, 24])
        addr = rng.getrandbits(32) & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        key = (4, addr, plen)
        text = "%d.%d.%d.%d/%d" % (addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255, plen)
    else:
        plen = rng.choice([32, 40, 44, 48, 48])
        addr = (0x2000 << 112 | rng.getrandbits(125)) & (((1 << 128) - 1) << (128 - plen))
        key = (6, addr, plen)
        groups = ["%x" % ((addr >> (112 - 16 * i)) & 0xFFFF) for i in range(8)]
        text = ":".join(groups) + "/%d" % plen
    if key in seen:
        continue
    seen.add(key)
    out.write(text + "," + ",".join(rng.sample(pops, 3)) + "\n")
