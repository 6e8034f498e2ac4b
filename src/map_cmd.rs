//! `geodns map ...`: look up addresses in a map, summarise it, build one from a nets file.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use geomap::{AnswerTable, Derivation, KeySpace, Map, RowIndex};

#[derive(Subcommand)]
pub enum MapCommand {
    /// Show how an address is matched: prefix, ranked PoPs with latencies, derivation, the ECS
    /// scope and the PoP the server would answer (health ignored). IP `-` reads addresses from
    /// stdin and prints one tab-separated line each:
    /// address, key space, prefix, ranked PoPs, scope, derivation.
    Lookup {
        /// The map file.
        map: PathBuf,
        /// The address (or `-` for stdin).
        ip: String,
        /// Match in the client-subnet key space (as for a query with ECS); default: resolver.
        #[arg(long)]
        ecs: bool,
    },
    /// Why an address maps where it does, for "why am I sent to X" tickets: in both key spaces,
    /// every row covering the address from the most specific up (the fallback hierarchy), with
    /// derivation, samples and the median RTT per ranked PoP, and which one decides.
    Explain {
        /// The map file.
        map: PathBuf,
        /// The address (a client's, for the client-subnet key space; a resolver's, for the
        /// resolver key space).
        ip: IpAddr,
    },
    /// Export the map as a MaxMind DB, for gdnsd, Knot, PowerDNS and CoreDNS users. Each prefix
    /// of the chosen key space gets `location` = the first-ranked PoP's coordinates (so their
    /// nearest-datacenter modes pick our PoP) and `geodns` = {pops, rtt_ms, derivation, samples}
    /// for servers that can match on custom fields.
    ExportMmdb {
        /// The map file.
        map: PathBuf,
        /// The MaxMind DB to write.
        out: PathBuf,
        /// Which key space to export.
        #[arg(long, value_enum, default_value_t = OneSpace::Client)]
        key_space: OneSpace,
        /// Give the space no row covers to this PoP (typically the config's first in
        /// `default_order`), so other servers answer it with the scope of the uncovered block
        /// instead of a default answer with ECS scope /0.
        #[arg(long, value_name = "POP")]
        fill: Option<String>,
    },
    /// Score the map against a simulated world's ground truth (`geodns simulate --out`): the
    /// share of users sent within 5 ms of their fastest PoP and the mean and p95 regret, for
    /// the map and for the GeoIP-nearest and resolver-nearest baselines, as a Markdown table.
    Score {
        /// The map file.
        map: PathBuf,
        /// The world file the simulation ran.
        #[arg(long, default_value = "data/world.toml")]
        world: PathBuf,
        /// The simulation's output directory (with ground_truth.csv).
        #[arg(long, default_value = "data/sim")]
        truth: PathBuf,
    },
    /// Prefix counts per key space and family, per first-ranked PoP and per derivation.
    Stats {
        /// The map file.
        map: PathBuf,
    },
    /// Where a drained PoP's users go: per-PoP load and users' added latency with the PoPs in
    /// `--drain` drained, "next PoP takes all" against the capacity-aware spill (docs/spill.md).
    /// Capacities come from the server config's `[pops.<id>] capacity`.
    Spill {
        /// The server config (its map and PoP capacities are used).
        #[arg(short, long, default_value_os_t = crate::default_config("geodns.toml"))]
        config: PathBuf,
        /// PoPs to drain, comma-separated; repeat for several scenarios.
        #[arg(long, required = true)]
        drain: Vec<String>,
    },
    /// Build a map from a nets file (`prefix,pop[,pop...]` per line, like gdnsd's nets).
    ImportNets {
        /// The nets file.
        nets: PathBuf,
        /// The map file to write.
        out: PathBuf,
        /// Which key space(s) the rows go to.
        #[arg(long, value_enum, default_value_t = Spaces::Both)]
        key_space: Spaces,
        /// Generation id recorded in the map (default: derived from the time).
        #[arg(long)]
        generation: Option<String>,
        /// Creation time to record, RFC 3339 (default: now). Fixing it makes the output
        /// byte-identical across runs.
        #[arg(long)]
        created_at: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OneSpace {
    Client,
    Resolver,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Spaces {
    Client,
    Resolver,
    Both,
}

pub fn run(cmd: MapCommand) -> anyhow::Result<()> {
    match cmd {
        MapCommand::Lookup { map, ip, ecs } => lookup(map, &ip, ecs),
        MapCommand::Stats { map } => stats(map),
        MapCommand::Spill { config, drain } => spill(&config, &drain),
        MapCommand::Score { map, world, truth } => {
            use geodns_simulate::{score, World};
            let world = World::read(&world)?;
            let truth = score::read_truth(&truth.join("ground_truth.csv"))?;
            print!(
                "{}",
                score::table(&score::score(&world, &truth, &read(&map)?))
            );
            Ok(())
        }
        MapCommand::Explain { map, ip } => explain(map, ip),
        MapCommand::ExportMmdb {
            map,
            out,
            key_space,
            fill,
        } => {
            not_an_input(&out, &[&map])?;
            let m = read(&map)?;
            let fill = fill
                .map(|id| {
                    m.meta.pops.index(&id).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--fill {id:?}: not a PoP of the map ({})",
                            m.meta
                                .pops
                                .iter()
                                .map(|p| p.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                })
                .transpose()?;
            let space = match key_space {
                OneSpace::Client => KeySpace::Client,
                OneSpace::Resolver => KeySpace::Resolver,
            };
            let n = geomap::mmdb::export(&m, space, fill, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!("{}: {n} networks from the {space} key space", out.display());
            Ok(())
        }
        MapCommand::ImportNets {
            nets,
            out,
            key_space,
            generation,
            created_at,
        } => {
            not_an_input(&out, &[&nets])?;
            let spaces: &[KeySpace] = match key_space {
                Spaces::Client => &[KeySpace::Client],
                Spaces::Resolver => &[KeySpace::Resolver],
                Spaces::Both => &KeySpace::ALL,
            };
            let now = std::time::SystemTime::now();
            let created_at = match created_at {
                Some(t) => {
                    humantime::parse_rfc3339(&t).with_context(|| format!("--created-at {t:?}"))?;
                    t
                }
                None => humantime::format_rfc3339_seconds(now).to_string(),
            };
            let generation = generation
                .unwrap_or_else(|| format!("nets-{}", created_at.replace([':', '-'], "")));
            let map = geomap::nets::import_nets(&nets, None, spaces, generation, created_at)
                .map_err(|errs| {
                    anyhow::anyhow!(
                        "{} bad line(s):\n  {}",
                        errs.len(),
                        errs.iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("\n  ")
                    )
                })?;
            geomap::write_map(&out, &map).with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "{}: {} rows, {} PoPs, generation {}",
                out.display(),
                map.rows.len(),
                map.meta.pops.len(),
                map.meta.generation
            );
            Ok(())
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Map> {
    geomap::read_map(path).with_context(|| format!("reading map {}", path.display()))
}

fn lookup(path: PathBuf, ip: &str, ecs: bool) -> anyhow::Result<()> {
    let map = read(&path)?;
    let table = AnswerTable::build(&map, None);
    let rows = RowIndex::build(&map);
    let space = if ecs {
        KeySpace::Client
    } else {
        KeySpace::Resolver
    };
    let ids = |pops: &[u16]| {
        pops.iter()
            .map(|&p| map.meta.pops.get(p).id.to_string())
            .collect::<Vec<_>>()
    };
    if ip == "-" {
        let stdin = std::io::stdin();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for (n, line) in stdin.lock().lines().enumerate() {
            let line = line?;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let Ok(addr) = text.parse::<IpAddr>() else {
                bail!("stdin line {}: {text:?} is not an IP address", n + 1);
            };
            let hit = table.lookup(space, addr);
            let row = rows.find(space, addr).map(|i| &map.rows[i]);
            writeln!(
                out,
                "{addr}\t{space}\t{}\t{}\t{}\t{}",
                row.map_or("-".to_owned(), |r| r.prefix.to_string()),
                hit.pops.map_or("-".to_owned(), |p| ids(p).join(",")),
                hit.scope,
                row.map_or("fallback", |r| r.derivation.as_str()),
            )?;
        }
        return Ok(());
    }
    let addr: IpAddr = ip
        .parse()
        .with_context(|| format!("{ip:?} is not an IP address"))?;
    let hit = table.lookup(space, addr);
    println!("address     {addr} ({space} key space)");
    match rows.find(space, addr).map(|i| (i, &map.rows[i])) {
        Some((i, r)) => {
            println!(
                "prefix      {} (row {i}, {}, {} samples)",
                r.prefix, r.derivation, r.samples
            );
            println!("ranked      {}", ranked(&map, r, ""));
        }
        None => {
            println!("prefix      none: the server falls back to GeoIP, then its default order")
        }
    }
    println!("scope       /{}", hit.scope);
    match hit.pops {
        Some(p) => println!(
            "answer      {} (first healthy of {})",
            ids(p)[0],
            ids(p).join(", ")
        ),
        None => println!("answer      fallback (GeoIP or default order)"),
    }
    Ok(())
}

fn stats(path: PathBuf) -> anyhow::Result<()> {
    let map = read(&path)?;
    let table = AnswerTable::build(&map, None);
    println!("map         {}", path.display());
    println!("generation  {}", map.meta.generation);
    println!("created     {}", map.meta.created_at);
    if let (Some(f), Some(u)) = (&map.meta.source_from, &map.meta.source_until) {
        println!("source      {f} .. {u}");
    }
    println!("rows        {}", map.rows.len());
    println!("lists       {} distinct rankings", table.list_count());
    for space in KeySpace::ALL {
        let v4 = map
            .rows
            .iter()
            .filter(|r| r.key_space == space && r.prefix.addr().is_ipv4())
            .count();
        let v6 = map
            .rows
            .iter()
            .filter(|r| r.key_space == space && r.prefix.addr().is_ipv6())
            .count();
        println!(
            "{:<11} {v4} IPv4 + {v6} IPv6 prefixes, {} leaves after flattening",
            space.as_str(),
            table.leaf_count(space)
        );
    }
    println!("by first-ranked PoP:");
    for (i, pop) in map.meta.pops.iter().enumerate() {
        let counts: Vec<String> = KeySpace::ALL
            .iter()
            .map(|&s| {
                let n = map
                    .rows
                    .iter()
                    .filter(|r| r.key_space == s && r.pops.first() == Some(&(i as u16)))
                    .count();
                format!("{s} {n}")
            })
            .collect();
        println!("  {:<10} {}", pop.id, counts.join(", "));
    }
    println!("by derivation:");
    for d in Derivation::ALL {
        let n = map.rows.iter().filter(|r| r.derivation == d).count();
        if n > 0 {
            println!("  {:<10} {n}", d.as_str());
        }
    }
    Ok(())
}

/// A row's PoPs with their median RTTs, e.g. `iad 91.4 ms, ams 106.6 ms, sin (unmeasured)`.
fn ranked(map: &Map, r: &geomap::MapRow, unmeasured: &str) -> String {
    let parts: Vec<String> = r
        .pops
        .iter()
        .zip(&r.rtt_ms)
        .enumerate()
        .map(|(i, (&p, rtt))| {
            let id = &map.meta.pops.get(p).id;
            let own = r
                .own_share
                .get(i)
                .copied()
                .flatten()
                .map_or(String::new(), |o| format!(" ({:.0} % own data)", o * 100.0));
            rtt.map_or(format!("{id}{unmeasured}"), |v| {
                format!("{id} {v:.1} ms{own}")
            })
        })
        .collect();
    parts.join(", ")
}

fn explain(path: PathBuf, addr: IpAddr) -> anyhow::Result<()> {
    let map = read(&path)?;
    let table = AnswerTable::build(&map, None);
    println!("address     {addr}");
    println!(
        "map         {} (generation {}, created {})",
        path.display(),
        map.meta.generation,
        map.meta.created_at
    );
    for space in KeySpace::ALL {
        let how = match space {
            KeySpace::Client => "queries carrying ECS with this client subnet",
            KeySpace::Resolver => "queries from this resolver without ECS",
        };
        println!("\n{space} key space ({how}):");
        let mut covering: Vec<&geomap::MapRow> = map
            .rows
            .iter()
            .filter(|r| r.key_space == space && r.prefix.contains(&addr))
            .collect();
        covering.sort_by_key(|r| std::cmp::Reverse(r.prefix.prefix_len()));
        if covering.is_empty() {
            println!("  no row covers it: the server falls back to GeoIP (nearest PoP), then its default order");
            continue;
        }
        for (i, r) in covering.iter().enumerate() {
            let verdict = if i == 0 {
                "decides"
            } else {
                "covers (less specific)"
            };
            println!(
                "  {:<20} {verdict}: {}, {} samples",
                r.prefix.to_string(),
                r.derivation,
                r.samples
            );
            println!("  {:<20} ranked: {}", "", ranked(&map, r, " (unmeasured)"));
        }
        let hit = table.lookup(space, addr);
        let why = match covering[0].derivation {
            geomap::Derivation::Measured => "measured for this prefix itself, pooled with its neighbours and the latency model by how many samples it has",
            geomap::Derivation::Aggregated => "the aggregate of this prefix: its unmeasured parts borrow from it, and agreeing more specific measurements were folded into it",
            geomap::Derivation::Routed => "the aggregate of the routed prefix (one network) covering this address",
            geomap::Derivation::Modeled => "never measured: the latency model at its GeoIP location, shifted by its measured neighbours",
            geomap::Derivation::Geoip => "nothing measured near it: nearest PoPs by GeoIP",
            geomap::Derivation::Default => "nothing measured or located: the default order",
            geomap::Derivation::Static => "set by an operator (nets file)",
        };
        println!(
            "  answer: {} ({why}); ECS scope /{}",
            map.meta.pops.get(covering[0].pops[0]).id,
            hit.scope
        );
    }
    Ok(())
}

/// Prints the spill table for each drain scenario.
fn spill(config: &std::path::Path, scenarios: &[String]) -> anyhow::Result<()> {
    let metrics = geodns_server::metrics::Metrics::default();
    let data = geodns_server::dataset::Dataset::load(config, &metrics)?;
    let capacity: Vec<Option<f64>> = data.config.pops.values().map(|p| p.capacity).collect();
    let lists: Vec<&[geomap::PopIndex]> = (0..data.table.list_count())
        .map(|i| data.table.list(i as geomap::ListId))
        .collect();
    let ids: Vec<String> = data.pops.iter().map(|p| p.id.to_string()).collect();
    // Every argument is checked before anything is printed.
    for sc in scenarios {
        for d in sc.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            anyhow::ensure!(
                ids.iter().any(|i| i == d),
                "--drain {d}: no such PoP in {} ({})",
                config.display(),
                ids.join(", ")
            );
        }
    }
    // Loads come from the map's demand (samples per row); a map without any (a nets import,
    // an example) has nothing to spread, and a table of zeros would look like an answer.
    anyhow::ensure!(
        data.table.list_stats().iter().any(|s| s.demand > 0),
        "{}: the map {} records no demand (samples): nothing to compute loads from",
        config.display(),
        data.config.map.display()
    );
    let cap = |p: usize| capacity[p].map_or("-".to_owned(), |c| format!("{:.0} %", c * 100.0));
    println!(
        "| drained | rule | {} | over capacity | added ms |",
        ids.iter()
            .map(|i| format!("{i} load"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}---:|---:|", "---:|".repeat(ids.len()));
    println!(
        "| (capacity) | | {} | | |",
        (0..ids.len()).map(cap).collect::<Vec<_>>().join(" | ")
    );
    for sc in scenarios {
        let drained: Vec<&str> = sc
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for d in &drained {
            anyhow::ensure!(
                ids.iter().any(|i| i == d),
                "--drain {d}: no such PoP in {}",
                config.display()
            );
        }
        let down: Vec<bool> = ids.iter().map(|i| drained.contains(&i.as_str())).collect();
        for (rule, spread) in [("next PoP takes all", false), ("capacity-aware", true)] {
            let p = geodns_server::spill::plan(
                &lists,
                data.table.list_stats(),
                &capacity,
                &down,
                spread,
            );
            let over: f64 = p
                .load
                .iter()
                .zip(&capacity)
                .map(|(l, c)| c.map_or(0.0, |c| (l - c).max(0.0)))
                .sum();
            let rule = if p.guard {
                "capacity-aware (guard held)"
            } else {
                rule
            };
            println!(
                "| {} | {rule} | {} | {:.1} % | {:.2} |",
                drained.join("+"),
                p.load
                    .iter()
                    .map(|l| format!("{:.1} %", l * 100.0))
                    .collect::<Vec<_>>()
                    .join(" | "),
                over * 100.0,
                p.added_ms
            );
        }
    }
    Ok(())
}

/// Refuses an output that is one of the command's inputs (the same file, by device and inode,
/// whatever the path says): writing it would destroy the input (`map export-mmdb MAP MAP`
/// once replaced the map with an MMDB file, rc 0).
fn not_an_input(out: &std::path::Path, inputs: &[&std::path::Path]) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(o) = std::fs::metadata(out) else {
        return Ok(());
    };
    for input in inputs {
        if let Ok(i) = std::fs::metadata(input) {
            if (i.dev(), i.ino()) == (o.dev(), o.ino()) {
                anyhow::bail!(
                    "{}: the output is the input {}; refusing to overwrite it",
                    out.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}
