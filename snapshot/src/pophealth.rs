//! PoP health in ZooKeeper: `geodns announce` at each PoP keeps `<root>/health/<pop>` (JSON
//! with a `state` of `up`, `draining` or `down`, and per-VIP detail); every DNS server follows
//! the whole `<root>/health` directory with one persistent recursive watch and drains the PoPs
//! that are not up. A PoP with no node is not drained (no news is not bad news), and ZooKeeper
//! unreachable leaves the last known states in force. A PoP may also report its load, which
//! servers use to shed a growing share of its answers between two watermarks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zookeeper_client as zk;

use crate::layout::Layout;

/// What one PoP published.
#[derive(Clone, Debug, PartialEq)]
pub struct PopStatus {
    /// `up`, `draining`, `down`, or `unreadable`.
    pub state: String,
    /// The PoP's reported load (utilisation, 0-1 and beyond), if it reports one.
    pub load: Option<f64>,
    /// The VIPs (route prefixes, as published) whose route is not announced normally
    /// (withdrawn, or draining while others are up): servers leave their addresses out of the
    /// PoP's answers.
    pub vips_out: Vec<String>,
}

/// PoP id -> what it published.
pub type HealthMap = BTreeMap<String, PopStatus>;

/// Receives every new health map.
pub type ApplyHealth = Arc<dyn Fn(HealthMap) + Send + Sync>;

/// The health directory under a root.
pub fn dir(layout: &Layout) -> String {
    format!("{}/health", layout.root())
}

async fn read(client: &zk::Client, dir: &str) -> Result<HealthMap, zk::Error> {
    let mut out = HealthMap::new();
    let children = match client.list_children(dir).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => return Ok(out),
        Err(e) => return Err(e),
    };
    for pop in children {
        match client.get_data(&format!("{dir}/{pop}")).await {
            Ok((data, _)) => {
                let v = serde_json::from_slice::<serde_json::Value>(&data).ok();
                let state = v
                    .as_ref()
                    .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned))
                    .filter(|s| ["up", "draining", "down"].contains(&s.as_str()))
                    .unwrap_or_else(|| "unreadable".to_owned());
                let load = v
                    .as_ref()
                    .and_then(|v| v.get("load").and_then(|l| l.as_f64()))
                    .filter(|l| l.is_finite() && *l >= 0.0);
                let vips_out = v
                    .as_ref()
                    .and_then(|v| v.get("vips").and_then(|l| l.as_array()))
                    .map(|vips| {
                        vips.iter()
                            .filter(|x| {
                                x.get("route").and_then(|r| r.as_str()) != Some("announced")
                            })
                            .filter_map(|x| x.get("prefix").and_then(|p| p.as_str()))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(
                    pop,
                    PopStatus {
                        state,
                        load,
                        vips_out,
                    },
                );
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Follows `<root>/health` until the process ends, calling `apply` whenever the map changes.
pub async fn follow(
    connect: String,
    layout: Layout,
    session_timeout: Duration,
    recheck: Duration,
    apply: ApplyHealth,
) {
    let dir = dir(&layout);
    let mut last: Option<HealthMap> = None;
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(100));
    loop {
        let client = match zk::Client::connector()
            .with_session_timeout(session_timeout)
            .connect(&connect)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ZooKeeper unreachable; PoP health as last known");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        match client.mkdir(&dir, &opts).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot create {dir}");
                continue;
            }
        }
        let mut watcher = match client
            .watch(&dir, zk::AddWatchMode::PersistentRecursive)
            .await
        {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch {dir}");
                continue;
            }
        };
        let mut state = client.state_watcher();
        loop {
            match read(&client, &dir).await {
                Ok(map) => {
                    if last.as_ref() != Some(&map) {
                        apply(map.clone());
                        last = Some(map);
                    }
                }
                Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading PoP health failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            tokio::select! {
                _ = watcher.changed() => {}
                s = state.changed() => {
                    if s.is_terminated() {
                        break;
                    }
                    // Reconnected: the loop reads the directory again (changes made while
                    // disconnected fire no watch), and the watch is added again, whatever the
                    // client library resent (it once resent no persistent watch: issue 19).
                    if s == zk::SessionState::SyncConnected {
                        match client.watch(&dir, zk::AddWatchMode::PersistentRecursive).await {
                            Ok(w) => watcher = w,
                            Err(e) => tracing::warn!(error = %e, "cannot watch {dir} again"),
                        }
                    }
                }
                _ = tokio::time::sleep(recheck) => {}
            }
        }
    }
}
