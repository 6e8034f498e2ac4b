//! Users against the live server and collector: each user's resolver queries the probe names
//! from its own loopback address, then the client posts its report through a trusted proxy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use rand::RngExt;

use crate::options::{SimulateError, SimulateOptions};
use crate::truth::write_truth;
use crate::users::{plan, User};
use crate::world::World;

/// Counts of what happened.
#[derive(Debug, Default)]
pub struct Summary {
    /// Users simulated.
    pub users: AtomicU64,
    /// DNS probe queries answered.
    pub dns_ok: AtomicU64,
    /// DNS probe queries that timed out or failed.
    pub dns_failed: AtomicU64,
    /// Reports acknowledged.
    pub reports_ok: AtomicU64,
    /// Reports refused or failed after retries.
    pub reports_failed: AtomicU64,
}

/// Runs the simulation; progress on stderr every second.
pub async fn run(world: World, opts: SimulateOptions) -> Result<Arc<Summary>, SimulateError> {
    let users = plan(&world, &opts);
    write_truth(&world, &users, &opts.out)?;
    let http = reqwest::Client::builder()
        .local_address(opts.proxy)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://{}/v1/report", opts.collector);
    let zone = format!("{}.{}", world.probe_label, world.zone.trim_end_matches('.'));
    let summary = Arc::new(Summary::default());
    let started = Instant::now();
    let progress = {
        let s = summary.clone();
        let total = users.len();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "simulate: {}/{total} users, dns {} ok {} failed, reports {} ok {} failed, {:.0} s",
                    s.users.load(Relaxed),
                    s.dns_ok.load(Relaxed),
                    s.dns_failed.load(Relaxed),
                    s.reports_ok.load(Relaxed),
                    s.reports_failed.load(Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let users = Arc::new(users);
    let pop_ids: Arc<Vec<String>> = Arc::new(world.pops.iter().map(|p| p.id.clone()).collect());
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (users, next, summary, http, url, zone) = (
            users.clone(),
            next.clone(),
            summary.clone(),
            http.clone(),
            url.clone(),
            zone.clone(),
        );
        let pops = pop_ids.clone();
        let dns = opts.dns;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed) as usize;
                let Some(u) = users.get(i) else { break };
                simulate_user(u, &pops, dns, &zone, &http, &url, &summary).await;
                summary.users.fetch_add(1, Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    progress.abort();
    Ok(summary)
}

async fn simulate_user(
    u: &User,
    pops: &[String],
    dns: SocketAddr,
    zone: &str,
    http: &reqwest::Client,
    url: &str,
    s: &Summary,
) {
    // The resolver asks for every PoP's probe name, from its own address.
    match tokio::net::UdpSocket::bind((u.resolver, 0)).await {
        Ok(sock) => {
            for pop in u.results.iter().map(|&(i, _)| &pops[usize::from(i)]) {
                let ok = resolve(
                    &sock,
                    dns,
                    &format!("{}.{pop}.{zone}.", u.probe_id),
                    u.ecs.then_some(u.subnet),
                )
                .await;
                if ok { &s.dns_ok } else { &s.dns_failed }.fetch_add(1, Relaxed);
            }
        }
        Err(_) => {
            s.dns_failed.fetch_add(u.results.len() as u64, Relaxed);
        }
    }
    let results: Vec<String> = u
        .results
        .iter()
        .map(|&(i, rtt)| (rtt, &pops[usize::from(i)]))
        .map(|(rtt, pop)| match rtt {
            v if v.is_nan() => format!(r#"{{"pop":"{pop}","ok":false}}"#),
            v => format!(r#"{{"pop":"{pop}","rtt_ms":{v},"ok":true}}"#),
        })
        .collect();
    let body = format!(
        r#"{{"probe_id":"{}","results":[{}]}}"#,
        u.probe_id,
        results.join(",")
    );
    for attempt in 0..5u32 {
        let sent = http
            .post(url)
            .header("X-Forwarded-For", u.client.to_string())
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent.map(|r| r.status().as_u16()) {
            Ok(204) => {
                s.reports_ok.fetch_add(1, Relaxed);
                return;
            }
            // Busy or rate limited: back off and retry; anything else is final.
            Ok(429 | 503) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await
            }
            Ok(_) => break,
        }
    }
    s.reports_failed.fetch_add(1, Relaxed);
}

async fn resolve(
    sock: &tokio::net::UdpSocket,
    dns: SocketAddr,
    name: &str,
    ecs: Option<IpNet>,
) -> bool {
    let Ok(qname) = Name::from_ascii(name) else {
        return false;
    };
    let mut m = Message::query();
    m.metadata.id = rand::rng().random();
    m.add_query(Query::query(qname, RecordType::A));
    if let Some(subnet) = ecs {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::from(subnet)));
        m.set_edns(e);
    }
    let Ok(bytes) = m.to_vec() else { return false };
    for _ in 0..3 {
        if sock.send_to(&bytes, dns).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 1500];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await
        {
            return Message::from_vec(&buf[..n])
                .is_ok_and(|r| r.metadata.id == m.metadata.id && !r.answers.is_empty());
        }
    }
    false
}
