//! The process loop: every VIP's checks, its route's state, maintenance and load, turned into
//! route commands and the PoP's published health; a clean withdrawal on SIGTERM or when ExaBGP
//! closes our stdin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use geodns_snapshot::pophealth::{PopHealth, PopState, VipHealth};
use tokio::sync::{mpsc, watch, Notify};

use crate::check;
use crate::config::Config;
use crate::exabgp::{command, is_shutdown, say};
use crate::publish::{publish_zk, write_health_file};
use crate::state::{desired, pop_state, Route, VipState};

pub(crate) enum Event {
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
