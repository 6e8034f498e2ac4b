//! The served state: what one query reads (a dataset, the health in force, the internal zones,
//! the probe log), and [`State`], the one place it changes.
//!
//! Every change (a map or config reload, a health file, the PoP health published in ZooKeeper,
//! an internal snapshot) builds a new [`Served`] beside the one in force and swaps it in whole,
//! so a query sees one consistent version of everything; the swaps are read-copy-update, so two
//! racing changes (a reload and an internal snapshot) never lose one another, and the memory
//! the old state held is handed back to the OS after each.

use std::sync::Arc;

use arc_swap::{ArcSwap, Cache, Guard};
use geodns_beacon::{DnsProbeRow, LogWriter};
use geodns_daemon::prometheus::{Kind, Text};
use geodns_snapshot::pophealth::{HealthMap, PopState};
use geodns_zone::Zone;

use crate::dataset::{Dataset, PopAnswer};
use crate::internal::Internal;
use geodns_snapshot::health_file::DownSet;

/// Every reason `geodns_pop_drained` has a series for.
pub const POP_DRAIN_REASONS: [&str; 6] = [
    "file",
    "bgp-draining",
    "bgp-down",
    "bgp-unreadable",
    "vips-down",
    "load",
];

/// The served state in force, swapped whole: readers [`State::load`] it (or keep a
/// [`State::cache`]), writers go through the `swap_*` methods, the only writers there are.
pub struct State {
    current: ArcSwap<Served>,
}

impl State {
    /// The state to start with.
    pub fn new(served: Served) -> State {
        State {
            current: ArcSwap::from_pointee(served),
        }
    }

    /// The state in force, for one query or one decision.
    #[inline]
    pub fn load(&self) -> Guard<Arc<Served>> {
        self.current.load()
    }

    /// A per-thread cache of the state in force (one atomic load per query while nothing
    /// changes), for the UDP workers.
    pub fn cache(&self) -> Cache<&ArcSwap<Served>, Arc<Served>> {
        Cache::new(&self.current)
    }

    /// A reloaded dataset and the health file read with it.
    pub fn swap_data(&self, data: Arc<Dataset>, down: &DownSet) {
        self.swap(|cur| cur.with_data(data.clone(), down));
    }

    /// Another health file.
    pub fn swap_health_file(&self, down: &DownSet) {
        self.swap(|cur| cur.with_health(down));
    }

    /// Another PoP health published in ZooKeeper by `geodns announce`.
    pub fn swap_published_health(&self, published: Arc<HealthMap>) {
        self.swap(|cur| cur.with_published(published.clone()));
    }

    /// Other internal zones.
    pub fn swap_internal(&self, internal: Arc<Internal>) {
        self.swap(|cur| cur.with_internal(internal.clone()));
    }

    fn swap(&self, next: impl Fn(&Served) -> Served) {
        // rcu: a change racing with this one is applied on top of it, never lost.
        let old = self.current.rcu(|cur| next(cur));
        // The previous state is freed once the last query holding it finishes; hand the freed
        // pages back to the OS, or every large swap leaves the process a dataset bigger.
        drop(old);
        release_free_memory();
    }
}

/// Returns freed heap pages to the OS after a large swap (glibc keeps them otherwise, and RSS
/// would grow by a dataset's size with every reload).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Where probe-zone queries are logged: the writer lives as long as the process, across
/// reloads.
pub type ProbeLogger = Arc<LogWriter<DnsProbeRow>>;

/// The share of a PoP's answers to shed at a reported load: none below the low watermark,
/// growing linearly to all at the high one (docs/spill.md).
pub fn shed(load: Option<f64>) -> f64 {
    const LOW: f64 = crate::spill::LOW_WATERMARK;
    const HIGH: f64 = crate::spill::HIGH_WATERMARK;
    load.map_or(0.0, |l| ((l - LOW) / (HIGH - LOW)).clamp(0.0, 1.0))
}

/// A dataset with the health state and internal zones in force: what one query reads.
pub struct Served {
    /// The data.
    pub data: Arc<Dataset>,
    /// `down[i]`: PoP `i` is drained (by the health file or by the PoP's published health).
    pub down: Box<[bool]>,
    /// `drained_by[i]`: why PoP `i` is drained, one of [`POP_DRAIN_REASONS`].
    pub drained_by: Box<[Option<&'static str>]>,
    /// PoPs the health file drains.
    pub file_down: DownSet,
    /// PoP health published in ZooKeeper by `geodns announce`: id -> state and load.
    pub published: Arc<HealthMap>,
    /// The probe query log, if configured.
    pub probe_log: Option<ProbeLogger>,
    /// Internal zones from the published snapshot (empty without `[zookeeper]`).
    pub internal: Arc<Internal>,
    /// The status TXT RDATA: the dataset's fields and the internal snapshot's.
    pub status_txt: Vec<u8>,
    /// Where drained or full PoPs' users go (empty without capacities).
    pub spill: crate::spill::Plan,
    /// Per PoP, the addresses still answered where some of its VIPs are out (withdrawn or
    /// draining while others are up, as `geodns announce` published); `None`: all of them.
    pub live: Box<[Option<LiveAddrs>]>,
}

/// A PoP's addresses left once the VIPs whose routes are out are taken away.
#[derive(Debug, Clone, Default)]
pub struct LiveAddrs {
    /// IPv4 VIPs still announced.
    pub a: Vec<[u8; 4]>,
    /// IPv6 VIPs still announced.
    pub aaaa: Vec<[u8; 16]>,
    /// The VIP prefixes out, for the status record and the metrics.
    pub out: Vec<ipnet::IpNet>,
}

/// The addresses of `pop` not inside any of the prefixes `out`; `None` if none is inside.
fn live_addrs(pop: &PopAnswer, out: &[ipnet::IpNet]) -> Option<LiveAddrs> {
    let v4 = |a: &[u8; 4]| std::net::IpAddr::from(*a);
    let v6 = |a: &[u8; 16]| std::net::IpAddr::from(*a);
    let gone = |ip: std::net::IpAddr| out.iter().any(|n| n.contains(&ip));
    let hit: Vec<ipnet::IpNet> = out
        .iter()
        .copied()
        .filter(|n| {
            pop.a.iter().any(|a| n.contains(&v4(a))) || pop.aaaa.iter().any(|a| n.contains(&v6(a)))
        })
        .collect();
    if hit.is_empty() {
        return None;
    }
    Some(LiveAddrs {
        a: pop.a.iter().filter(|a| !gone(v4(a))).copied().collect(),
        aaaa: pop.aaaa.iter().filter(|a| !gone(v6(a))).copied().collect(),
        out: hit,
    })
}

impl Served {
    /// The addresses answered for PoP `p`: its VIPs less those whose routes are out.
    #[inline]
    pub fn addresses(&self, p: usize) -> (&[[u8; 4]], &[[u8; 16]]) {
        match &self.live[p] {
            Some(l) => (&l.a, &l.aaaa),
            None => (&self.data.pops[p].a, &self.data.pops[p].aaaa),
        }
    }

    /// Pairs a dataset with a set of down PoPs (ids the dataset does not know are ignored), the
    /// probe log and the internal zones.
    pub fn new(
        data: Arc<Dataset>,
        down: &DownSet,
        probe_log: Option<ProbeLogger>,
        internal: Arc<Internal>,
    ) -> Served {
        Served::with_sources(data, down, Default::default(), probe_log, internal)
    }

    fn with_sources(
        data: Arc<Dataset>,
        file_down: &DownSet,
        published: Arc<HealthMap>,
        probe_log: Option<ProbeLogger>,
        internal: Arc<Internal>,
    ) -> Served {
        // VIPs out, per PoP: their addresses leave the answers; a PoP with none left drains.
        let live: Box<[Option<LiveAddrs>]> = data
            .pops
            .iter()
            .map(|p| {
                let out: Vec<ipnet::IpNet> = published
                    .get(p.id.as_str())
                    .map(|st| st.vips_out.iter().filter_map(|v| v.parse().ok()).collect())
                    .unwrap_or_default();
                live_addrs(p, &out)
            })
            .collect();
        // Why each PoP is drained, one of POP_DRAIN_REASONS, if it is.
        let why = |i: usize, id: &geomap::PopId| -> Option<&'static str> {
            if file_down.contains(id) {
                return Some("file");
            }
            let st = published.get(id.as_str())?;
            if !st.is_up() {
                return Some(match st.state {
                    Some(PopState::Draining) => "bgp-draining",
                    Some(PopState::Down) => "bgp-down",
                    _ => "bgp-unreadable",
                });
            }
            if live[i]
                .as_ref()
                .is_some_and(|l| l.a.is_empty() && l.aaaa.is_empty())
            {
                return Some("vips-down");
            }
            // Above the high watermark a PoP gets no answers at all.
            (shed(st.load) >= 1.0).then_some("load")
        };
        let drained_by: Box<[Option<&'static str>]> = data
            .pops
            .iter()
            .enumerate()
            .map(|(i, p)| why(i, &p.id))
            .collect();
        let down: Box<[bool]> = drained_by.iter().map(Option::is_some).collect();
        let shed_of =
            |id: &geomap::PopId| published.get(id.as_str()).map_or(0.0, |st| shed(st.load));
        let sheds: Vec<f64> = data.pops.iter().map(|p| shed_of(&p.id)).collect();
        let capacity: Vec<Option<f64>> = data.config.pops.values().map(|p| p.capacity).collect();
        let shedding = sheds.iter().any(|s| *s > 0.0 && *s < 1.0);
        let spill = if capacity.iter().any(Option::is_some) || shedding {
            let lists: Vec<&[geomap::PopIndex]> = (0..data.table.list_count())
                .map(|i| data.table.list(i as geomap::ListId))
                .collect();
            crate::spill::plan_with_shed(
                &lists,
                data.table.list_stats(),
                &capacity,
                &down,
                &sheds,
                true,
            )
        } else {
            crate::spill::Plan::default()
        };
        let drained: Vec<String> = data
            .pops
            .iter()
            .zip(drained_by.iter())
            .filter_map(|(p, w)| w.map(|w| format!("{}:{w}", p.id)))
            .collect();
        let vips_out: Vec<String> = data
            .pops
            .iter()
            .zip(live.iter())
            .filter_map(|(p, l)| Some((p, l.as_ref()?)))
            .flat_map(|(p, l)| l.out.iter().map(move |n| format!("{}:{n}", p.id)))
            .collect();
        let mut status_txt = data.status_txt.clone();
        let mut fields = internal.status_fields();
        if spill.guard {
            fields.push("spill=guard".to_owned());
        } else if spill.lists.iter().any(Option::is_some) {
            fields.push("spill=spread".to_owned());
        }
        fields.push(format!(
            "down={}",
            if drained.is_empty() {
                "none".to_owned()
            } else {
                drained.join(",")
            }
        ));
        if !vips_out.is_empty() {
            fields.push(format!("vips-out={}", vips_out.join(",")));
        }
        for f in fields {
            let b = &f.as_bytes()[..f.len().min(255)];
            status_txt.push(b.len() as u8);
            status_txt.extend_from_slice(b);
        }
        Served {
            data,
            down,
            drained_by,
            file_down: file_down.clone(),
            published,
            probe_log,
            internal,
            status_txt,
            spill,
            live,
        }
    }

    /// The PoPs the health file drains, by id (the published health is kept apart).
    pub fn down_set(&self) -> DownSet {
        self.file_down.clone()
    }

    /// The same data, log, internal zones and published health with another health file.
    pub fn with_health(&self, down: &DownSet) -> Served {
        Served::with_sources(
            self.data.clone(),
            down,
            self.published.clone(),
            self.probe_log.clone(),
            self.internal.clone(),
        )
    }

    /// The same with another published PoP health (from ZooKeeper).
    pub fn with_published(&self, published: Arc<HealthMap>) -> Served {
        Served::with_sources(
            self.data.clone(),
            &self.file_down,
            published,
            self.probe_log.clone(),
            self.internal.clone(),
        )
    }

    /// Another dataset (a reload), with this snapshot's log, internal zones and published health.
    pub fn with_data(&self, data: Arc<Dataset>, down: &DownSet) -> Served {
        Served::with_sources(
            data,
            down,
            self.published.clone(),
            self.probe_log.clone(),
            self.internal.clone(),
        )
    }

    /// The same data and health with other internal zones.
    pub fn with_internal(&self, internal: Arc<Internal>) -> Served {
        Served::with_sources(
            self.data.clone(),
            &self.file_down,
            self.published.clone(),
            self.probe_log.clone(),
            internal,
        )
    }

    /// Prometheus lines for the PoPs' state in force: `geodns_pop_up{pop}` (one series per PoP
    /// whose value changes), `geodns_pop_drained{pop, reason}` (one series per PoP and reason,
    /// 1 for the reason the PoP is drained or shed by, so no series appears or vanishes when a
    /// PoP drains), `geodns_vip_out{pop, vip}` (one series per VIP address).
    pub fn health_metrics(&self) -> String {
        let mut t = Text::new();
        let u = "geodns_pop_up";
        t.family(
            u,
            Kind::Gauge,
            "1 if the PoP is answered, 0 if drained (geodns_pop_drained says why).",
        );
        for (p, down) in self.data.pops.iter().zip(self.down.iter()) {
            t.sample(u, &[("pop", p.id.as_str())], u8::from(!*down));
        }
        let d = "geodns_pop_drained";
        t.family(d, Kind::Gauge, "1 for the reason a PoP is drained or shed by (file: the health file; bgp-draining, bgp-down, bgp-unreadable: what announce published; vips-down: every VIP's route is out; load: shed for load), 0 for the others.");
        for (p, why) in self.data.pops.iter().zip(self.drained_by.iter()) {
            for reason in POP_DRAIN_REASONS {
                t.sample(
                    d,
                    &[("pop", p.id.as_str()), ("reason", reason)],
                    u8::from(*why == Some(reason)),
                );
            }
        }
        // One series per VIP address a PoP answers with, 1 while its route is out: a VIP
        // going out changes a value, never the set of series.
        let v = "geodns_vip_out";
        t.family(v, Kind::Gauge, "1 while the VIP's route is out (withdrawn, or draining while the PoP's others are up) and its address is left out of the PoP's answers, else 0.");
        for (i, p) in self.data.pops.iter().enumerate() {
            let (a, aaaa) = self.addresses(i);
            for x in &p.a {
                let ip = std::net::Ipv4Addr::from(*x).to_string();
                t.sample(
                    v,
                    &[("pop", p.id.as_str()), ("vip", &ip)],
                    u8::from(!a.contains(x)),
                );
            }
            for x in &p.aaaa {
                let ip = std::net::Ipv6Addr::from(*x).to_string();
                t.sample(
                    v,
                    &[("pop", p.id.as_str()), ("vip", &ip)],
                    u8::from(!aaaa.contains(x)),
                );
            }
        }
        t.finish()
    }

    /// The zone that holds `qname` (lowercase wire form): the one with the longest origin among
    /// the configured and the internal zones; a configured zone wins a tie.
    pub fn zone_for(&self, qname: &[u8]) -> Option<&Zone> {
        let configured = self.data.zones.iter().find(|z| z.contains(qname));
        let internal = self.internal.zones.iter().find(|z| z.contains(qname));
        match (configured, internal) {
            (Some(c), Some(i)) if i.origin.len() > c.origin.len() => Some(i),
            (Some(c), _) => Some(c),
            (None, i) => i,
        }
    }
}
