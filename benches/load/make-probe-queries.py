#!/usr/bin/env python3
"""Writes a dnsperf query file of unique probe names: `<id>.<pop>.probe.example.com A`.

usage: make-probe-queries.py COUNT > probes.txt   (deterministic)
"""
import random
import sys

rng = random.Random(1)
pops = ["ams", "iad", "sin"]
for i in range(int(sys.argv[1])):
    print("%016x.%s.probe.example.com A" % (rng.getrandbits(64), pops[i % 3]))
