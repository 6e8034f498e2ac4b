#!/usr/bin/env python3
"""Generates a large simulated world for `geodns simulate` and a matching server config.

usage: gen-world.py OUT_DIR [--networks N] [--seed S]
       gen-world.py OUT_DIR --internet [--subnets N] [--isps N] [--seed S]
       gen-world.py OUT_DIR --zoo [--isps N] [--seed S]

Writes OUT_DIR/world.toml (14 PoPs, client networks in 10.0.0.0/8 spread over 60 metros,
ISP resolvers per metro plus public resolvers with and without ECS) and OUT_DIR/geodns.toml
(the same PoPs, for `geodns mapgen --config`). Deterministic for a seed.

Geography misleads the way it does on the real Internet:
- each metro has a few access ISPs, and some ISPs peer badly with one of the metro's two
  nearest PoPs (+30..150 ms for all their networks);
- most networks use their ISP's resolver; some use an ISP resolver in another metro (a
  national resolver far away), some a public resolver (the nearest site);
- half the public resolvers send ECS, half do not.
Client addresses only ever appear as data in logs (`--logs-only`); resolvers are on
127.10.0.0/16 as the simulator requires.

With --internet, a world built like the long tail of the real Internet (docs/map-quality.md):
16 PoPs; about --isps ISPs, each in one region and a few of its metros, with one to three
resolvers (one /24 per ISP, a resolver per metro it serves) and its networks in one address
block; 8 % of (ISP, PoP) pairs badly peered; a public resolver that sends ECS and one that
does not, each with 32 egress addresses in one /24 per site; enterprise resolvers on another
continent; 20 % of networks never run the beacon; and sparse sessions (each measures the 3
nearest PoPs and 2 random ones). About 11 % of traffic goes through the ECS resolver.

With --zoo, one small world of the zoo (docs/map-quality.md, "The zoo"): the seed picks which
of mapgen's assumptions the world breaks (ZOO_TRAITS, one by the seed, often a second at
random), and whether browsers use one probe id per session or one per PoP. The traits:
networks and resolvers within a few km of PoPs (RTTs of 1-3 ms); PoPs whose own latency
differs by tens of ms; RTT not linear in distance (a power of it, and a step across oceans);
heavy-tailed noise (log-normal, 1 % of samples 10x); sessions that measure only some PoPs; a
PoP few sessions measure; IPv6-only ISPs; every client behind one public resolver, with and
without ECS; every client in one /16; clock-skewed and duplicated reports; GeoIP wrong for a
fifth of networks. The traits it has are listed in the world's first line.
"""
import argparse
import math
import random
from pathlib import Path

POPS = [
    ("ams", 52.37, 4.90), ("fra", 50.11, 8.68), ("lhr", 51.47, -0.45), ("mad", 40.42, -3.70),
    ("iad", 38.95, -77.45), ("ord", 41.88, -87.63), ("dfw", 32.90, -97.04), ("sjc", 37.36, -121.93),
    ("gru", -23.43, -46.47), ("sin", 1.35, 103.99), ("nrt", 35.76, 140.39), ("syd", -33.94, 151.18),
    ("bom", 19.09, 72.87), ("jnb", -26.14, 28.24),
]

# (name, lat, lon, relative population)
METROS = [
    ("london", 51.51, -0.13, 9), ("paris", 48.86, 2.35, 11), ("berlin", 52.52, 13.40, 4),
    ("madrid", 40.42, -3.70, 6), ("rome", 41.90, 12.50, 4), ("warsaw", 52.23, 21.01, 3),
    ("stockholm", 59.33, 18.07, 2), ("istanbul", 41.01, 28.98, 15), ("moscow", 55.76, 37.62, 12),
    ("kyiv", 50.45, 30.52, 3), ("athens", 37.98, 23.73, 3), ("lisbon", 38.72, -9.14, 3),
    ("cairo", 30.04, 31.24, 20), ("lagos", 6.52, 3.38, 15), ("nairobi", -1.29, 36.82, 5),
    ("johannesburg", -26.20, 28.05, 6), ("casablanca", 33.57, -7.59, 4), ("dubai", 25.20, 55.27, 3),
    ("riyadh", 24.71, 46.68, 7), ("tehran", 35.69, 51.39, 9), ("karachi", 24.86, 67.01, 16),
    ("delhi", 28.61, 77.21, 30), ("mumbai", 19.08, 72.88, 20), ("bangalore", 12.97, 77.59, 12),
    ("dhaka", 23.81, 90.41, 21), ("bangkok", 13.76, 100.50, 10), ("jakarta", -6.21, 106.85, 11),
    ("manila", 14.60, 120.98, 14), ("singapore", 1.35, 103.82, 6), ("kuala-lumpur", 3.14, 101.69, 8),
    ("hong-kong", 22.32, 114.17, 7), ("shanghai", 31.23, 121.47, 25), ("beijing", 39.90, 116.41, 21),
    ("seoul", 37.57, 126.98, 10), ("tokyo", 35.68, 139.69, 37), ("osaka", 34.69, 135.50, 19),
    ("sydney", -33.87, 151.21, 5), ("melbourne", -37.81, 144.96, 5), ("auckland", -36.85, 174.76, 2),
    ("new-york", 40.71, -74.01, 19), ("boston", 42.36, -71.06, 5), ("washington", 38.91, -77.04, 6),
    ("atlanta", 33.75, -84.39, 6), ("miami", 25.76, -80.19, 6), ("chicago", 41.88, -87.63, 9),
    ("dallas", 32.78, -96.80, 7), ("denver", 39.74, -104.99, 3), ("seattle", 47.61, -122.33, 4),
    ("san-francisco", 37.77, -122.42, 7), ("los-angeles", 34.05, -118.24, 13),
    ("toronto", 43.65, -79.38, 6), ("mexico-city", 19.43, -99.13, 21), ("bogota", 4.71, -74.07, 11),
    ("lima", -12.05, -77.04, 10), ("santiago", -33.45, -70.67, 7), ("buenos-aires", -34.60, -58.38, 15),
    ("sao-paulo", -23.55, -46.63, 22), ("rio", -22.91, -43.17, 13), ("vancouver", 49.28, -123.12, 3),
    ("honolulu", 21.31, -157.86, 1),
]

# Public resolvers: a few sites each; "ecs" ones send EDNS Client Subnet.
PUBLIC_SITES = [("iad", 39.04, -77.49), ("ams", 52.37, 4.90), ("sin", 1.29, 103.85), ("sjc", 37.34, -121.89)]


def allocate(next24, size):
    """The next /size in 10.0.0.0/8 at or after /24 number next24: (prefix, next free /24)."""
    blocks = 1 << (24 - size)
    start = (next24 + blocks - 1) // blocks * blocks
    if start + blocks > 65536:
        raise SystemExit("10.0.0.0/8 is full: fewer networks or subnets")
    return f"10.{start // 256}.{start % 256}.0/{size}", start + blocks


def km(a_lat, a_lon, b_lat, b_lon):
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    dp, dl = p2 - p1, math.radians(b_lon - a_lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(h))


REGION = {  # metro -> region, for ISPs (national) and enterprises (abroad)
    **{m: "eu" for m in "london paris berlin madrid rome warsaw stockholm istanbul moscow kyiv athens lisbon".split()},
    **{m: "af" for m in "cairo lagos nairobi johannesburg casablanca".split()},
    **{m: "me" for m in "dubai riyadh tehran karachi".split()},
    **{m: "in" for m in "delhi mumbai bangalore dhaka".split()},
    **{m: "sea" for m in "bangkok jakarta manila singapore kuala-lumpur".split()},
    **{m: "ea" for m in "hong-kong shanghai beijing seoul tokyo osaka".split()},
    **{m: "oc" for m in "sydney melbourne auckland".split()},
    **{m: "na" for m in "new-york boston washington atlanta miami chicago dallas denver seattle san-francisco los-angeles toronto vancouver honolulu".split()},
    **{m: "la" for m in "mexico-city bogota lima santiago buenos-aires sao-paulo rio".split()},
}
EXTRA_POPS = [("hkg", 22.31, 113.91), ("scl", -33.39, -70.79)]
PUBLIC_SITES_16 = PUBLIC_SITES + [("fra", 50.11, 8.68), ("gru", -23.55, -46.63), ("nrt", 35.68, 139.69),
                                  ("syd", -33.87, 151.21), ("bom", 19.08, 72.88), ("jnb", -26.20, 28.05)]


def internet(a, rnd, out):
    """The --internet world (see the module doc)."""
    pops = POPS + EXTRA_POPS
    w = ['# Generated by scripts/gen-world.py --internet --subnets %d --isps %d --seed %d' % (a.subnets, a.isps, a.seed),
         'zone = "example.com"', 'probe_label = "probe"', '',
         '[latency]', 'base_ms = 2.0', 'km_per_ms = 100.0', 'inflation = 1.5', 'jitter_ms = 4.0',
         'subnet_spread_ms = 6.0', 'loss = 0.01', '',
         '[sessions]', 'nearest = 3', 'random = 2', '']
    for pid, lat, lon in pops:
        w += ['[[pops]]', f'id = "{pid}"', f'lat = {lat}', f'lon = {lon}', '']
    block = [0]  # resolver /24s allocated in 127.10.0.0 and up

    def resolver_block():
        block[0] += 1
        return f"127.{10 + block[0] // 256}.{block[0] % 256}"

    def resolver(name, base, host, lat, lon, ecs, egress=1):
        w.extend(['[[resolvers]]', f'name = "{name}"', f'address = "{base}.{host}"', f'ecs = {"true" if ecs else "false"}',
                  f'egress = {egress}', f'lat = {lat:.2f}', f'lon = {lon:.2f}', ''])
        return name

    public = {}
    for ecs in (True, False):
        public[ecs] = [(resolver(f"public-{'ecs' if ecs else 'noecs'}-{site}", resolver_block(), 1, lat, lon, ecs, 32), lat, lon)
                       for site, lat, lon in PUBLIC_SITES_16]
    # Enterprises: a resolver in one region whose offices are on other continents.
    enterprises = []
    for i in range(40):
        name, lat, lon, _ = rnd.choice(METROS)
        enterprises.append((resolver(f"enterprise{i}-{name}", resolver_block(), 1, lat, lon, False), REGION[name]))
    weights = [m[3] for m in METROS]
    by_region = {}
    for m in METROS:
        by_region.setdefault(REGION[m[0]], []).append(m)
    subnets_per_isp = a.subnets / a.isps
    next24 = 0
    networks = 0
    for i in range(a.isps):
        home = rnd.choices(METROS, weights)[0]
        region = by_region[REGION[home[0]]]
        metros = [home] + [rnd.choices(region, [m[3] for m in region])[0] for _ in range(rnd.choice([0, 0, 1, 2]))]
        metros = list({m[0]: m for m in metros}.values())[:3]
        base = resolver_block()
        resolvers = [(resolver(f"isp{i}-{m[0]}", base, k + 1, m[1] + rnd.uniform(-0.3, 0.3), m[2] + rnd.uniform(-0.3, 0.3), False), m)
                     for k, m in enumerate(metros)]
        penalty = {p[0]: rnd.randint(20, 120) for p in pops if rnd.random() < 0.08}
        clause = ("penalty_ms = { " + ", ".join(f"{k} = {v}.0" for k, v in penalty.items()) + " }") if penalty else ""
        # The ISP's networks, in one address block; their size and number vary a lot.
        budget = max(1, round(rnd.expovariate(1 / subnets_per_isp)))
        next24 = (next24 + 3) // 4 * 4
        while budget > 0:
            size = rnd.choice([24, 24, 24, 23, 22])
            blocks = min(1 << (24 - size), budget)
            size = 24 - (blocks.bit_length() - 1)
            prefix, next24 = allocate(next24, size)
            budget -= 1 << (24 - size)
            m = rnd.choice(metros)
            lat, lon = m[1] + rnd.uniform(-1.0, 1.0), m[2] + rnd.uniform(-1.0, 1.0)
            res = min(resolvers, key=lambda r: km(lat, lon, r[1][1], r[1][2]))[0]
            r = rnd.random()
            if r < 0.10:
                res = rnd.choice(resolvers)[0]  # resolves centrally, maybe in another metro
            elif r < 0.22:
                res = min(public[True], key=lambda s: km(lat, lon, s[1], s[2]))[0]
            elif r < 0.34:
                res = min(public[False], key=lambda s: km(lat, lon, s[1], s[2]))[0]
            elif r < 0.38:
                abroad = [e for e in enterprises if e[1] != REGION[m[0]]]
                res = rnd.choice(abroad)[0]
            w += ['[[networks]]', f'name = "isp{i}-net{networks}"', f'prefix = "{prefix}"', f'lat = {lat:.2f}',
                  f'lon = {lon:.2f}', f'weight = {rnd.choice([1, 1, 2, 3, 5, 8])}', f'resolver = "{res}"']
            if clause:
                w.append(clause)
            if rnd.random() < 0.2:
                w.append('beacon = false')
            w.append('')
            networks += 1
    (out / "world.toml").write_text("\n".join(w))
    config(out, pops)
    print(f"{out}/world.toml: {len(pops)} PoPs, {a.isps} ISPs, {networks} networks, {next24} client /24s")


ZOO_TRAITS = ["near", "pop_base", "nonlinear", "heavy_tail", "partial_sessions", "rare_pop", "ipv6",
              "one_public_ecs", "one_public_noecs", "one_16", "skew_dups", "geoip_wrong"]


def zoo(a, rnd, out):
    """One world of the zoo (see the module doc)."""
    traits = {ZOO_TRAITS[a.seed % len(ZOO_TRAITS)]}
    if rnd.random() < 0.5:
        traits.add(rnd.choice(ZOO_TRAITS))
    if {"one_public_ecs", "one_public_noecs"} <= traits:
        traits.discard("one_public_noecs")
    id_per_pop = (a.seed // len(ZOO_TRAITS)) % 2 == 1
    pops = rnd.sample(POPS + EXTRA_POPS, rnd.randint(5, 10))
    near = "near" in traits
    latency = {"base_ms": 1.0 if near else 2.0, "km_per_ms": 100.0, "inflation": 1.5,
               "jitter_ms": 0.3 if near else 3.0, "subnet_spread_ms": 0.5 if near else 4.0, "loss": 0.01}
    if "nonlinear" in traits:
        latency.update(exponent=rnd.choice([0.6, 1.4]), ocean_ms=40.0)
    if "heavy_tail" in traits:
        latency.update(lognormal_sigma=0.35, outlier_share=0.01, outlier_factor=10.0)
    w = ['# Generated by scripts/gen-world.py --zoo --seed %d: %s%s' % (
            a.seed, ", ".join(sorted(traits)), ", one probe id per PoP" if id_per_pop else ""),
         'zone = "example.com"', 'probe_label = "probe"', '', '[latency]']
    w += [f"{k} = {v}" for k, v in latency.items()]
    partial = "partial_sessions" in traits
    w += ['', '[sessions]', f'nearest = {1 if partial else 3}', f'random = {1 if partial else 2}', '']
    logs = {"id_per_pop": "true" if id_per_pop else "false"}
    if "skew_dups" in traits:
        logs.update(skew_ms=120000.0, duplicate_share=0.1)
    w += ['[logs]'] + [f"{k} = {v}" for k, v in logs.items()] + ['']
    rare = rnd.randrange(len(pops)) if "rare_pop" in traits else None
    for i, (pid, lat, lon) in enumerate(pops):
        w += ['[[pops]]', f'id = "{pid}"', f'lat = {lat}', f'lon = {lon}']
        if "pop_base" in traits:
            w.append(f'base_ms = {rnd.uniform(0, 60):.1f}')
        if i == rare:
            w.append('measured_share = 0.01')
        w.append('')
    block = [0]

    def resolver(name, lat, lon, ecs, egress=1):
        block[0] += 1
        w.extend(['[[resolvers]]', f'name = "{name}"', f'address = "127.{10 + block[0] // 256}.{block[0] % 256}.1"',
                  f'ecs = {"true" if ecs else "false"}', f'egress = {egress}', f'lat = {lat:.3f}', f'lon = {lon:.3f}', ''])
        return name

    # Where users are: metros, or (near) the PoPs themselves.
    places = [(p[0], p[1], p[2], 5) for p in pops] if near else METROS
    sites = rnd.sample(places, min(3, len(places)))
    public = {ecs: [(resolver(f"public-{'ecs' if ecs else 'noecs'}-{s[0]}", s[1], s[2], ecs, 8), s[1], s[2])
                    for s in sites] for ecs in (True, False)}
    only = None
    if "one_public_ecs" in traits or "one_public_noecs" in traits:
        only = resolver("everyone", sites[0][1], sites[0][2], "one_public_ecs" in traits, 16)
    isps = a.isps or rnd.randint(30, 60)
    in_one_16 = "one_16" in traits
    next24, next48, networks, subnets = 0, 0, 0, 0
    for i in range(isps):
        home = rnd.choices(places, [m[3] for m in places])[0]
        spread = 0.05 if near else 1.0
        ipv6 = "ipv6" in traits and rnd.random() < 0.4
        res = [(resolver(f"isp{i}-{k}", home[1] + rnd.uniform(-spread, spread) / 5,
                         home[2] + rnd.uniform(-spread, spread) / 5, False), None) for k in range(rnd.choice([1, 1, 2]))]
        penalty = {p[0]: rnd.randint(20, 120) for p in pops if rnd.random() < 0.08}
        for _ in range(rnd.choice([1, 2, 2, 3, 4])):
            if ipv6:
                next48 += 1
                prefix, n24 = f"2001:db8:{next48:x}::/48", 1
            else:
                size = 24 if in_one_16 else rnd.choice([24, 24, 23])
                blocks = 1 << (24 - size)
                start = (next24 + blocks - 1) // blocks * blocks
                if in_one_16 and start + blocks > 256:
                    break
                prefix, next24 = allocate(next24, size)
                n24 = blocks
            lat, lon = home[1] + rnd.uniform(-spread, spread), home[2] + rnd.uniform(-spread, spread)
            r = rnd.random()
            if only:
                name = only
            elif r < 0.12:
                name = min(public[True], key=lambda s: km(lat, lon, s[1], s[2]))[0]
            elif r < 0.24:
                name = min(public[False], key=lambda s: km(lat, lon, s[1], s[2]))[0]
            else:
                name = rnd.choice(res)[0]
            w += ['[[networks]]', f'name = "isp{i}-net{networks}"', f'prefix = "{prefix}"', f'lat = {lat:.3f}',
                  f'lon = {lon:.3f}', f'weight = {rnd.choice([1, 1, 2, 3, 5])}', f'resolver = "{name}"']
            if penalty:
                w.append("penalty_ms = { " + ", ".join(f"{k} = {v}.0" for k, v in penalty.items()) + " }")
            if "geoip_wrong" in traits and rnd.random() < 0.2:
                elsewhere = rnd.choice(METROS)
                w += [f'geoip_lat = {elsewhere[1]}', f'geoip_lon = {elsewhere[2]}']
            if networks > 0 and rnd.random() < 0.15:
                w.append('beacon = false')
            w.append('')
            networks += 1
            subnets += n24
    (out / "world.toml").write_text("\n".join(w))
    config(out, pops)
    print(f"{out}/world.toml: {', '.join(sorted(traits))}; {len(pops)} PoPs, {networks} networks, {subnets} client subnets")


def config(out, pops):
    c = ['# Generated by scripts/gen-world.py: the PoPs of world.toml, for geodns mapgen --config.',
         'server_id = "generated"', 'map = "map.arrow"',
         'default_order = [%s]' % ", ".join(f'"{p[0]}"' for p in pops), '',
         '[listen]', 'dns = ["127.0.0.1:5353"]', '']
    for n, (pid, lat, lon) in enumerate(pops):
        c += [f'[pops.{pid}]', f'vip4 = ["192.0.2.{n + 1}"]', f'lat = {lat}', f'lon = {lon}', '']
    c += ['[[zones]]', 'origin = "example.com"', 'records = ["@ 3600 IN SOA ns1 host 1 3600 600 86400 60", "@ 3600 IN NS ns1", "ns1 3600 IN A 192.0.2.53"]',
          '', '[zones.geo]', 'www = { ttl = 60 }', '']
    (out / "geodns.toml").write_text("\n".join(c))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--networks", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--internet", action="store_true", help="the long-tail world of docs/map-quality.md")
    ap.add_argument("--subnets", type=int, default=20000, help="--internet: client /24s, about")
    ap.add_argument("--isps", type=int, default=None, help="--internet: ISPs (default 3200); --zoo: default 30-60")
    ap.add_argument("--zoo", action="store_true", help="one small world of the zoo, its traits picked by --seed")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.zoo:
        zoo(a, rnd, out)
        return
    if a.internet:
        a.isps = a.isps or 3200
        internet(a, rnd, out)
        return

    w = ['# Generated by scripts/gen-world.py --networks %d --seed %d' % (a.networks, a.seed),
         'zone = "example.com"', 'probe_label = "probe"', '',
         '[latency]', 'base_ms = 2.0', 'km_per_ms = 100.0', 'inflation = 1.5', 'jitter_ms = 4.0',
         'subnet_spread_ms = 6.0', 'loss = 0.01', '']
    for pid, lat, lon in POPS:
        w += ['[[pops]]', f'id = "{pid}"', f'lat = {lat}', f'lon = {lon}', '']

    resolvers = []  # (name, lat, lon)
    addr = [0]

    def resolver(name, lat, lon, ecs):
        addr[0] += 1
        ip = f"127.10.{addr[0] // 256}.{addr[0] % 256}"
        w.extend(['[[resolvers]]', f'name = "{name}"', f'address = "{ip}"', f'ecs = {"true" if ecs else "false"}',
                  f'lat = {lat}', f'lon = {lon}', ''])
        resolvers.append((name, lat, lon))
        return name

    public = {True: [], False: []}
    for ecs in (True, False):
        for site, lat, lon in PUBLIC_SITES:
            public[ecs].append((resolver(f"public-{'ecs' if ecs else 'noecs'}-{site}", lat, lon, ecs), lat, lon))
    isps = {}  # metro -> [(resolver name, penalty clause or "")]
    for name, lat, lon, pop in METROS:
        isps[name] = []
        for i in range(2 + pop // 8):
            penalty = ""
            if rnd.random() < 0.25:
                near = sorted(POPS, key=lambda p: km(lat, lon, p[1], p[2]))[:2]
                penalty = f"penalty_ms = {{ {rnd.choice(near)[0]} = {rnd.randint(30, 150)}.0 }}"
            isps[name].append((resolver(f"{name}-isp{i}", lat, lon, False), penalty))

    weights = [m[3] for m in METROS]
    next24 = 0  # /24s allocated in 10.0.0.0/8
    for i in range(a.networks):
        name, lat, lon, _ = rnd.choices(METROS, weights)[0]
        lat += rnd.uniform(-1.0, 1.0)
        lon += rnd.uniform(-1.0, 1.0)
        size = rnd.choice([24, 23, 22, 22, 21, 21, 20])
        prefix, next24 = allocate(next24, size)
        res, penalty = rnd.choice(isps[name])
        r = rnd.random()
        if r < 0.10:
            # The ISP resolves centrally, in another metro.
            res = rnd.choice(isps[rnd.choice(METROS)[0]])[0]
        elif r < 0.30:
            ecs = rnd.random() < 0.5
            res = min(public[ecs], key=lambda s: km(lat, lon, s[1], s[2]))[0]
        w += ['[[networks]]', f'name = "{name}-net{i}"', f'prefix = "{prefix}"', f'lat = {lat:.2f}',
              f'lon = {lon:.2f}', f'weight = {rnd.choice([1, 1, 2, 3, 5, 8])}', f'resolver = "{res}"']
        if penalty:
            w.append(penalty)
        w.append('')
    (out / "world.toml").write_text("\n".join(w))

    config(out, POPS)
    print(f"{out}/world.toml: {len(POPS)} PoPs, {len(resolvers)} resolvers, {a.networks} networks, {next24} client /24s")


if __name__ == "__main__":
    main()
