//! `geodns announce`: an ExaBGP API process (ExaBGP runs it and reads its stdout). For each VIP
//! it runs the configured health check, keeps the route's state ([`state`]), and writes ExaBGP
//! text-API commands (`announce route ...`, `withdraw route ...`) when the desired route
//! changes; ExaBGP acknowledges each on our stdin (`done` / `error`). The PoP's health (up,
//! draining, down, per VIP and overall) is published where the DNS servers read it: a node per
//! PoP in ZooKeeper, and/or the server's health file.
//!
//! - Start-up announces nothing until a VIP's checks pass `rise` times.
//! - SIGTERM withdraws every route, then exits; ExaBGP closing our stdin does the same.
//! - SIGUSR1 runs every check at once.
//! - While the drain file exists, healthy routes are announced less preferred for the grace
//!   period, then withdrawn; removing it announces them normally again.

pub mod check;
pub mod config;
pub mod state;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geodns_snapshot::health_file;
use geodns_snapshot::pophealth::{PopHealth, PopState, VipHealth};
use tokio::sync::{mpsc, watch, Notify};
use zookeeper_client as zk;

use crate::config::{parse_community, Config, DrainMethod, Vip};
use crate::state::{desired, pop_state, Route, VipState};

/// The ExaBGP command that makes `vip`'s route `route` (None: nothing to say, already so).
pub fn command(cfg: &Config, vip: &Vip, route: Route) -> String {
    let prefix = vip.prefix;
    let nh = &vip.next_hop;
    match route {
        Route::Withdrawn => format!("withdraw route {prefix} next-hop {nh}"),
        Route::Announced | Route::Draining => {
            let draining = route == Route::Draining;
            let med = if draining && cfg.drain.method == DrainMethod::Med {
                cfg.drain.med
            } else {
                vip.med
            };
            let mut communities: Vec<String> = vip
                .communities
                .iter()
                .filter_map(|c| parse_community(c))
                .map(|(a, b)| format!("{a}:{b}"))
                .collect();
            if draining && cfg.drain.method == DrainMethod::GracefulShutdown {
                communities.push("65535:0".into());
            }
            let mut line = format!("announce route {prefix} next-hop {nh} med {med}");
            if !communities.is_empty() {
                line.push_str(&format!(" community [{}]", communities.join(" ")));
            }
            if draining && cfg.drain.method == DrainMethod::Prepend {
                let asn = cfg.local_as.expect("checked with the config");
                let path = vec![asn.to_string(); cfg.drain.prepend as usize];
                line.push_str(&format!(" as-path [{}]", path.join(" ")));
            }
            line
        }
    }
}

/// Whether a line from ExaBGP announces its shutdown: `shutdown`, or ExaBGP 4.2's
/// `shutdown <pid> <ppid>`.
fn is_shutdown(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("shutdown") && words.all(|w| w.bytes().all(|b| b.is_ascii_digit()))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // ExaBGP reads line by line; a write error means it is gone, and stdin's EOF ends us.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn write_health_file(path: &std::path::Path, h: &PopHealth) -> std::io::Result<()> {
    let text = health_file::render(&h.pop, h.state);
    geomap::atomic_file::write(path, |f| std::io::Write::write_all(f, text.as_bytes()))
}

/// Keeps `<root>/health/<pop>` equal to the latest health, reconnecting with backoff.
async fn publish_zk(
    zkcfg: geodns_snapshot::ZkSettings,
    pop: String,
    mut rx: watch::Receiver<Option<PopHealth>>,
) {
    let layout = zkcfg.layout().expect("checked with the config");
    let dir = geodns_snapshot::pophealth::dir(&layout);
    let path = format!("{dir}/{pop}");
    let mut backoff = geodns_snapshot::backoff::Backoff::new(Duration::from_millis(100));
    loop {
        let client = geodns_snapshot::backoff::connect(
            &zkcfg.connect,
            Duration::from_millis(zkcfg.session_timeout_ms),
            &mut backoff,
            "health not published",
        )
        .await;
        backoff.reset();
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        if let Err(e) = client.mkdir(&dir, &opts).await {
            if e != zk::Error::NodeExists {
                tracing::warn!(error = %e, "cannot create {dir}");
                continue;
            }
        }
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(h) = current {
                let data = h.encode();
                let res = match client.set_data(&path, &data, None).await {
                    Err(zk::Error::NoNode) => client.create(&path, &data, &opts).await.map(|_| ()),
                    r => r.map(|_| ()),
                };
                if let Err(e) = res {
                    tracing::warn!(error = %e, "publishing health failed; reconnecting");
                    break;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

enum Event {
    Check(usize, bool, String),
    Tick,
    CheckAll,
    Stop(&'static str),
}

/// Runs until SIGTERM or until ExaBGP closes our stdin.
pub async fn run(cfg: Config) {
    let cfg = Arc::new(cfg);
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    let now_all = Arc::new(Notify::new());
    // Checks go straight to the service: no proxy from the environment, only a configured one.
    let http = match cfg.http_proxy.as_deref().map(reqwest::Proxy::all) {
        Some(Ok(p)) => reqwest::Client::builder().proxy(p),
        _ => reqwest::Client::builder().no_proxy(),
    }
    .build()
    .expect("an HTTP client");
    for (i, vip) in cfg.vips.iter().enumerate() {
        let (tx, vip, now_all, http) = (tx.clone(), vip.clone(), now_all.clone(), http.clone());
        tokio::spawn(async move {
            let interval = Duration::from_millis(vip.interval_ms);
            let timeout = Duration::from_millis(vip.timeout_ms);
            loop {
                let (ok, reason) = check::run(&vip.check, timeout, &http).await;
                if tx.send(Event::Check(i, ok, reason)).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = now_all.notified() => {}
                }
            }
        });
    }
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT");
            let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1");
            loop {
                let ev = tokio::select! {
                    _ = term.recv() => Event::Stop("SIGTERM"),
                    _ = int.recv() => Event::Stop("SIGINT"),
                    _ = usr1.recv() => Event::CheckAll,
                };
                let stop = matches!(ev, Event::Stop(_));
                if tx.send(ev).await.is_err() || stop {
                    return;
                }
            }
        });
    }
    {
        // ExaBGP's acknowledgements; EOF means it is gone. A plain thread: stdin is blocking.
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut stdin = std::io::stdin().lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                // Bytes, not text: a line that is not UTF-8 is bad input, not ExaBGP leaving
                // (which would withdraw every route).
                match stdin.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let Ok(l) = std::str::from_utf8(&buf) else {
                    tracing::warn!(
                        bytes = buf.len(),
                        "ignoring a line on stdin that is not UTF-8"
                    );
                    continue;
                };
                if l.trim() == "error" {
                    tracing::error!("ExaBGP refused a command");
                } else if is_shutdown(l) {
                    // ExaBGP 4.2 says `shutdown <pid> <ppid>`, older ones `shutdown`.
                    let _ = tx.blocking_send(Event::Stop("ExaBGP shutdown"));
                    return;
                }
            }
            let _ = tx.blocking_send(Event::Stop("ExaBGP closed our stdin"));
        });
    }
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tx.send(Event::Tick).await.is_err() {
                    return;
                }
            }
        });
    }
    let (health_tx, health_rx) = watch::channel::<Option<PopHealth>>(None);
    if let Some(z) = cfg.publish.zookeeper.clone() {
        tokio::spawn(publish_zk(z, cfg.pop.to_string(), health_rx));
    }

    let start = Instant::now();
    let mut vips: Vec<VipState> = cfg.vips.iter().map(|_| VipState::new(start)).collect();
    let mut routes: Vec<Route> = vec![Route::Withdrawn; cfg.vips.len()];
    let mut maintenance: Option<Instant> = None;
    let mut published: Option<PopHealth> = None;
    let mut load: Option<f64> = None;
    let grace = Duration::from_millis(cfg.drain.grace_ms);
    tracing::info!(pop = %cfg.pop, vips = cfg.vips.len(), "announcing nothing until the checks pass");
    while let Some(ev) = rx.recv().await {
        let now = Instant::now();
        match ev {
            Event::Check(i, ok, reason) => {
                let v = &cfg.vips[i];
                if vips[i].observe(ok, reason.clone(), v.rise, v.fall, &cfg.damping, now) {
                    tracing::info!(vip = %v.prefix, health = ?vips[i].health, %reason, "health changed");
                }
            }
            Event::CheckAll => {
                tracing::info!("SIGUSR1: checking every VIP now");
                now_all.notify_waiters();
            }
            Event::Tick => {
                for v in &mut vips {
                    if v.tick(&cfg.damping, now) {
                        tracing::warn!(suppressed = v.suppressed, "damping changed");
                    }
                }
                if let Some(f) = &cfg.load_file {
                    // Rounded to a percent, so noise below that publishes nothing.
                    load = std::fs::read_to_string(f)
                        .ok()
                        .and_then(|t| t.trim().parse::<f64>().ok())
                        .filter(|l| l.is_finite() && *l >= 0.0)
                        .map(|l| (l * 100.0).round() / 100.0);
                }
                if let Some(file) = &cfg.drain.file {
                    let on = file.exists();
                    if on && maintenance.is_none() {
                        tracing::info!(file = %file.display(), grace_ms = cfg.drain.grace_ms, "maintenance: draining");
                        maintenance = Some(now);
                    } else if !on && maintenance.is_some() {
                        tracing::info!("maintenance over");
                        maintenance = None;
                    }
                }
            }
            Event::Stop(why) => {
                tracing::info!(why, "withdrawing every route and exiting");
                for (i, v) in cfg.vips.iter().enumerate() {
                    if routes[i] != Route::Withdrawn {
                        say(&command(&cfg, v, Route::Withdrawn));
                    }
                }
                let down = PopHealth {
                    pop: cfg.pop.to_string(),
                    state: PopState::Down,
                    load: None,
                    vips: cfg
                        .vips
                        .iter()
                        .map(|v| VipHealth {
                            prefix: v.prefix.to_string(),
                            route: Route::Withdrawn,
                            reason: format!("geodns announce stopped ({why})"),
                            suppressed: false,
                        })
                        .collect(),
                };
                if let Some(f) = &cfg.publish.health_file {
                    let _ = write_health_file(f, &down);
                }
                let _ = health_tx.send(Some(down));
                // Give the ZooKeeper publisher a moment to write the last state.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
        }
        for (i, v) in cfg.vips.iter().enumerate() {
            let want = desired(vips[i].usable(), maintenance, grace, now);
            if want != routes[i] {
                say(&command(&cfg, v, want));
                tracing::info!(vip = %v.prefix, route = want.as_str(), "route changed");
                routes[i] = want;
            }
        }
        let health = PopHealth {
            pop: cfg.pop.to_string(),
            state: pop_state(&routes),
            load,
            vips: cfg
                .vips
                .iter()
                .zip(&routes)
                .zip(&vips)
                .map(|((v, r), s)| VipHealth {
                    prefix: v.prefix.to_string(),
                    route: *r,
                    reason: s.reason.clone(),
                    suppressed: s.suppressed,
                })
                .collect(),
        };
        let state_changed = published.as_ref().map(|p| {
            (
                p.state,
                p.load,
                p.vips.iter().map(|v| v.route).collect::<Vec<_>>(),
            )
        }) != Some((
            health.state,
            health.load,
            health.vips.iter().map(|v| v.route).collect(),
        ));
        if state_changed {
            tracing::info!(pop = %cfg.pop, state = health.state.as_str(), "PoP health");
            if let Some(f) = &cfg.publish.health_file {
                if let Err(e) = write_health_file(f, &health) {
                    tracing::error!(file = %f.display(), error = %e, "cannot write the health file");
                }
            }
            let _ = health_tx.send(Some(health.clone()));
            published = Some(health);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(method: &str) -> Config {
        toml::from_str(&format!(
            "pop = \"ams\"\nlocal_as = 65001\n[[vips]]\nprefix = \"192.0.2.10/32\"\nmed = 50\n\
             communities = [\"65001:7\"]\ncheck = {{ kind = \"tcp\", addr = \"127.0.0.1:1\" }}\n\
             [drain]\nmethod = \"{method}\"\nmed = 9000\nprepend = 2\n"
        ))
        .unwrap()
    }

    #[test]
    fn exabgp_shutdown_in_both_spellings() {
        assert!(is_shutdown("shutdown"));
        assert!(is_shutdown("shutdown 4242 1"));
        assert!(is_shutdown("  shutdown 4242 1\r"));
        assert!(!is_shutdown("done"));
        assert!(!is_shutdown("shutdownx"));
        assert!(!is_shutdown("shutdown now please"));
    }

    #[test]
    fn commands_for_every_route_and_drain_method() {
        let c = cfg("graceful-shutdown");
        let v = &c.vips[0];
        assert_eq!(
            command(&c, v, Route::Announced),
            "announce route 192.0.2.10/32 next-hop self med 50 community [65001:7]"
        );
        assert_eq!(
            command(&c, v, Route::Draining),
            "announce route 192.0.2.10/32 next-hop self med 50 community [65001:7 65535:0]"
        );
        assert_eq!(
            command(&c, v, Route::Withdrawn),
            "withdraw route 192.0.2.10/32 next-hop self"
        );
        let c = cfg("med");
        assert_eq!(
            command(&c, &c.vips[0], Route::Draining),
            "announce route 192.0.2.10/32 next-hop self med 9000 community [65001:7]"
        );
        let c = cfg("prepend");
        assert_eq!(
            command(&c, &c.vips[0], Route::Draining),
            "announce route 192.0.2.10/32 next-hop self med 50 community [65001:7] as-path [65001 65001]"
        );
    }
}
