#!/usr/bin/env python3
"""Runs mapgen on the zoo (scripts/gen-world.py --zoo) and prints one Markdown row per world.

usage: zoo.py GEODNS OUT_DIR [--seeds N] [--first S] [--sessions K]

For each seed: generate the world, simulate K beacon sessions per measured client subnet
(--logs-only), run mapgen with the world's GeoIP and --holdout 0.2, load the map with
`geodns check`, and score it against the truth (`geodns map score`). Prints, per world: its
traits, the map's served mean regret and within-5ms share beside the bounds (best answer per
resolver address and per resolver /24), and the holdout's client-key-space figures beside the
truth's. Exits non-zero if any step fails. docs/map-quality.md ("The zoo") has the figures.
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent.parent / "scripts" / "gen-world.py"


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))}: rc {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def scores(table):
    out = {}
    for line in table.splitlines():
        m = re.match(r"\| (.+?) \| ([\d.]+) % \| ([\d.]+) ms \| ([\d.]+) ms \|", line)
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return out


def world(geodns, out, seed, sessions):
    d = out / f"zoo{seed}"
    shutil.rmtree(d, ignore_errors=True)
    traits = run([sys.executable, SCRIPT, d, "--zoo", "--seed", seed]).split(": ", 1)[1].split(";")[0]
    w = tomllib.loads((d / "world.toml").read_text())
    subnets = 0
    for n in w["networks"]:
        if n.get("beacon", True):
            size = 48 if ":" in n["prefix"] else 24
            subnets += min(n.get("subnets", 64), 1 << (size - int(n["prefix"].split("/")[1])))
    run([geodns, "simulate", "--world", d / "world.toml", "--users", subnets * sessions, "--seed", seed,
         "--logs-only", d / "logs", "--out", d / "sim"])
    run([geodns, "mapgen", "--config", d / "geodns.toml", "--geoip", d / "sim/geoip.mmdb", "--logs", d / "logs",
         "--out", d / "map.arrow", "--holdout", "0.2", "--report", d / "report.json"])
    run([geodns, "check", "-c", d / "geodns.toml"])
    s = scores(run([geodns, "map", "score", d / "map.arrow", "--world", d / "world.toml", "--truth", d / "sim"]))
    report = json.loads((d / "report.json").read_text())
    hold = {x["key_space"]: x for x in report["holdout"]["scores"] if x["derivation"] == "all"}
    return {
        "seed": seed, "traits": traits.strip() + (", ids per PoP" if w.get("logs", {}).get("id_per_pop") else ""),
        "served": s["measured map, as served (ECS where the resolver sends it)"],
        "addr": s["bound, as served: best PoP per resolver address (knows the truth)"],
        "p24": s["bound, as served: best PoP per resolver /24 (knows the truth)"],
        "client": s["measured map, client key space (as if every resolver sent ECS)"],
        "resolver": s["measured map, resolver key space (as if no resolver sent ECS)"],
        "resolver_bound": s["bound, resolver key space: best PoP per resolver address (no ECS)"],
        "hold_client": (hold["client"]["within_5ms"] * 100, hold["client"]["mean_regret_ms"], hold["client"]["judged"]),
        "left_out": report.get("left_out_rows", 0),
        "noise": report["pooling"]["noise_log_var"] ** 0.5 * 100,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("geodns")
    ap.add_argument("out")
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--sessions", type=int, default=3)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print("| seed | traits | map: regret / within 5 ms | bound per address | bound per /24 | client key space: truth | holdout (judged) | sample noise | rows left out |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    gaps, client, resolver = [], [], []
    for seed in range(a.first, a.first + a.seeds):
        r = world(a.geodns, out, seed, a.sessions)
        gaps.append(r["served"][1] - r["addr"][1])
        client.append(r["client"][1])
        resolver.append(r["resolver"][1] - r["resolver_bound"][1])
        f = lambda v: f"{v[1]:.2f} ms / {v[0]:.1f} %"
        print(f"| {seed} | {r['traits']} | {f(r['served'])} | {f(r['addr'])} | {f(r['p24'])} | {f(r['client'])} "
              f"| {r['hold_client'][1]:.2f} ms / {r['hold_client'][0]:.1f} % ({r['hold_client'][2]}) | {r['noise']:.0f} % | {r['left_out']} |", flush=True)
    def spread(v):
        v = sorted(v)
        return f"median {v[len(v) // 2]:.2f} ms, mean {sum(v) / len(v):.2f} ms, worst {v[-1]:.2f} ms"
    print(f"\ndistance to the per-address bound (mean regret), as served: {spread(gaps)}")
    print(f"client key space (every resolver sending ECS) against its bound, 0: {spread(client)}")
    print(f"resolver key space (none sending ECS) against the per-address bound: {spread(resolver)}")


if __name__ == "__main__":
    main()
