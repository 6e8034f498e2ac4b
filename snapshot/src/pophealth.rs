//! PoP health in ZooKeeper: `geodns announce` at each PoP keeps `<root>/health/<pop>` (a
//! [`PopHealth`]: JSON with a `state` of `up`, `draining` or `down`, and per-VIP detail, written
//! and read by this one type); every DNS server follows
//! the whole `<root>/health` directory with one persistent recursive watch and drains the PoPs
//! that are not up. A PoP with no node is not drained (no news is not bad news), and ZooKeeper
//! unreachable leaves the last known states in force. A PoP may also report its load, which
//! servers use to shed a growing share of its answers between two watermarks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::layout::{Layout, ZkSettings};

/// A PoP's state for the DNS, as `geodns announce` publishes it: up while any VIP is announced
/// normally, draining while any is draining and none is up, down otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PopState {
    /// Answered.
    Up,
    /// Its routes are announced less preferred (maintenance): drained from answers.
    Draining,
    /// No route announced: drained from answers.
    Down,
}

impl PopState {
    /// The word published, logged and written to the health file.
    pub fn as_str(self) -> &'static str {
        match self {
            PopState::Up => "up",
            PopState::Draining => "draining",
            PopState::Down => "down",
        }
    }
}

/// What a VIP's route is in BGP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Not announced.
    Withdrawn,
    /// Announced with its normal attributes.
    Announced,
    /// Announced less preferred (maintenance, within the grace period).
    Draining,
}

impl Route {
    /// The word published and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Withdrawn => "withdrawn",
            Route::Announced => "announced",
            Route::Draining => "draining",
        }
    }
}

/// The node `<root>/health/<pop>` (JSON): written by `geodns announce`, read by every server,
/// through this one type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopHealth {
    /// The PoP.
    pub pop: String,
    /// The PoP's state.
    pub state: PopState,
    /// The reported load, if a load file is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// Each VIP.
    #[serde(default)]
    pub vips: Vec<VipHealth>,
}

/// One VIP in the published health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VipHealth {
    /// The route's prefix.
    pub prefix: String,
    /// The route.
    pub route: Route,
    /// The last check's outcome.
    #[serde(default)]
    pub reason: String,
    /// Damped.
    #[serde(default)]
    pub suppressed: bool,
}

impl PopHealth {
    /// The node's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("PoP health always serialises")
    }

    /// What a server makes of a node's bytes: data it cannot read drains the PoP (state
    /// `None`), and a load that is not a finite, non-negative number is no load.
    pub fn status(bytes: &[u8]) -> PopStatus {
        match serde_json::from_slice::<PopHealth>(bytes) {
            Ok(h) => PopStatus {
                state: Some(h.state),
                load: h.load.filter(|l| l.is_finite() && *l >= 0.0),
                vips_out: h
                    .vips
                    .into_iter()
                    .filter(|v| v.route != Route::Announced)
                    .map(|v| v.prefix)
                    .collect(),
            },
            Err(_) => PopStatus {
                state: None,
                load: None,
                vips_out: Vec::new(),
            },
        }
    }
}

/// What one PoP published, as a server uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct PopStatus {
    /// The PoP's state; `None`: its node could not be read (the PoP is drained).
    pub state: Option<PopState>,
    /// The PoP's reported load (utilisation, 0-1 and beyond), if it reports one.
    pub load: Option<f64>,
    /// The VIPs (route prefixes, as published) whose route is not announced normally
    /// (withdrawn, or draining while others are up): servers leave their addresses out of the
    /// PoP's answers.
    pub vips_out: Vec<String>,
}

impl PopStatus {
    /// Whether the PoP is answered by what it published.
    pub fn is_up(&self) -> bool {
        self.state == Some(PopState::Up)
    }

    /// The state's word (`unreadable` for a node that could not be read), for logs, the status
    /// record and the metrics.
    pub fn label(&self) -> &'static str {
        self.state.map_or("unreadable", PopState::as_str)
    }
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
            // Made by `geodns zk init --announce` and not written yet: nothing reported, as if
            // there were no node (junk still drains).
            Ok((data, _)) if data.is_empty() => {}
            Ok((data, _)) => {
                out.insert(pop, PopHealth::status(&data));
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Follows `<root>/health` until the process ends, calling `apply` whenever the map changes.
pub async fn follow(settings: ZkSettings, recheck: Duration, apply: ApplyHealth) {
    let layout = settings.layout().expect("checked with the config");
    let dir = dir(&layout);
    let mut last: Option<HealthMap> = None;
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(100));
    loop {
        let client = crate::backoff::connect(
            &settings,
            crate::access::Role::Server,
            &mut backoff,
            "PoP health as last known",
        )
        .await;
        backoff.reset();
        // Servers only read: with credentials the directory is `geodns zk init`'s to create,
        // and a watch waits for it all the same.
        match crate::store::ensure_path(
            &client,
            &dir,
            crate::access::Node::Health,
            settings.secure(),
        )
        .await
        {
            Ok(()) => {}
            Err(crate::store::StoreError::Zk {
                source: zk::Error::NoAuth,
                ..
            }) if settings.secure() => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_announce_publishes_is_what_a_server_reads() {
        let h = PopHealth {
            pop: "ams".into(),
            state: PopState::Draining,
            load: Some(0.5),
            vips: vec![
                VipHealth {
                    prefix: "192.0.2.10/32".into(),
                    route: Route::Announced,
                    reason: "ok".into(),
                    suppressed: false,
                },
                VipHealth {
                    prefix: "192.0.2.11/32".into(),
                    route: Route::Withdrawn,
                    reason: "refused".into(),
                    suppressed: true,
                },
            ],
        };
        let st = PopHealth::status(&h.encode());
        assert_eq!(st.state, Some(PopState::Draining));
        assert_eq!(st.label(), "draining");
        assert!(!st.is_up());
        assert_eq!(st.load, Some(0.5));
        assert_eq!(st.vips_out, ["192.0.2.11/32"]);
    }

    #[test]
    fn unreadable_health_drains_and_a_bad_load_is_no_load() {
        for junk in [
            &b"not json"[..],
            br#"{"pop":"ams","state":"sideways"}"#,
            b"",
        ] {
            let st = PopHealth::status(junk);
            assert_eq!(st.label(), "unreadable");
            assert!(!st.is_up());
        }
        let st = PopHealth::status(br#"{"pop":"ams","state":"up","load":-1}"#);
        assert!(st.is_up());
        assert_eq!(st.load, None);
    }
}
