//! Robots: a host registers itself, its addresses and the services it runs, as an *ephemeral*
//! znode under `<root>/hosts`. ZooKeeper removes the node when the host's session ends (the
//! host stopped, or was cut off from the ensemble for longer than the session timeout), so a
//! dead host's records go without anyone deleting them. An ensemble that loses quorum expires
//! no session, so it deletes nothing.
//!
//! The node is sequential (`<name>-<seq>`): two hosts claiming one name both register, and the
//! presenter reports the duplicate instead of one silently replacing the other.
//!
//! Session timeout: ZooKeeper grants a timeout between 2 and 20 of its ticks (`tickTime`,
//! 2 s by default, so 4 to 40 s) whatever the client asks. [`DEFAULT_SESSION_TIMEOUT`] (10 s)
//! is the time a host may be unreachable before its records are withdrawn: short enough that a
//! dead host stops being answered within seconds (plus the presenter's grace period), long
//! enough that a GC pause or a switch failover does not flap it.

use std::net::IpAddr;
use std::time::Duration;

use geodns_snapshot::Layout;
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

/// The session timeout `geodns register` asks for.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Most addresses one registration may carry: a host has a handful (one with 55,000 made its
/// name unanswerable and cost every server 11 s of compile).
pub const MAX_ADDRESSES: usize = 64;

/// Most services one registration may carry.
pub const MAX_SERVICES: usize = 64;

/// Largest registration node, bytes: a few addresses and services take a few hundred.
pub const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

/// What a host says about itself. Unknown fields are refused: the node is a contract, and a
/// 900 KB registration of unknown fields was once accepted and served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The host's fully qualified name, e.g. `host123.prn1.internal.example` (no final dot).
    pub name: String,
    /// Its addresses (A and AAAA records).
    pub addresses: Vec<IpAddr>,
    /// The services it runs.
    #[serde(default)]
    pub services: Vec<Service>,
}

/// One service a host runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// What it is, e.g. `web`.
    pub role: String,
    /// Where, e.g. `prn1`.
    pub cluster: String,
    /// The port it listens on.
    pub port: u16,
}

/// Why a registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The registration itself is malformed.
    #[error("registration: {0}")]
    Invalid(String),
    /// ZooKeeper said no or is unreachable.
    #[error("ZooKeeper: {0}")]
    Zk(#[from] zk::Error),
}

/// A single DNS label as names here take them: letters, digits, `-` and `_`, 1 to 63 bytes.
fn label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The one rule for a name in internal zones (hosts, services, the presenter's zones and
/// rules): labels of letters, digits, `-` and `_` (SRV owners), 1 to 63 bytes each, 253 in
/// all, an optional final dot. Stricter than the DNS, as operators' names are.
pub fn check_name(name: &str) -> Result<(), String> {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() || n.len() > 253 || !n.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a domain name (labels of letters, digits, - and _, 1 to 63 bytes; 253 in all)"
        ));
    }
    Ok(())
}

impl Registration {
    /// Checks what the presenter cannot repair: a name that is a DNS name, at least one address,
    /// services with a role and cluster that are single labels.
    pub fn validate(&self) -> Result<(), RegisterError> {
        check_name(&self.name).map_err(RegisterError::Invalid)?;
        if self.addresses.is_empty() {
            return Err(RegisterError::Invalid("no address".into()));
        }
        if self.addresses.len() > MAX_ADDRESSES || self.services.len() > MAX_SERVICES {
            return Err(RegisterError::Invalid(format!(
                "{} addresses and {} services: at most {MAX_ADDRESSES} and {MAX_SERVICES}",
                self.addresses.len(),
                self.services.len()
            )));
        }
        for s in &self.services {
            if !label_ok(&s.role) || !label_ok(&s.cluster) {
                return Err(RegisterError::Invalid(format!(
                    "service {}:{}: role and cluster must be single DNS labels",
                    s.role, s.cluster
                )));
            }
        }
        Ok(())
    }

    /// Parses a registration node's data.
    pub fn parse(data: &[u8]) -> Result<Registration, RegisterError> {
        if data.len() > MAX_REGISTRATION_BYTES {
            return Err(RegisterError::Invalid(format!(
                "{} bytes: at most {MAX_REGISTRATION_BYTES}",
                data.len()
            )));
        }
        let r: Registration =
            serde_json::from_slice(data).map_err(|e| RegisterError::Invalid(e.to_string()))?;
        r.validate()?;
        Ok(r)
    }

    /// The node's data.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a registration always serialises")
    }
}

/// Splits a registration node's name (`<name>-<seq>`) into the name and the sequence number.
pub fn node_name(node: &str) -> Option<(&str, u64)> {
    let (name, seq) = node.rsplit_once('-')?;
    Some((name, seq.parse().ok()?))
}

/// Creates the host's ephemeral node in `client`'s session; returns its path. With an identity
/// of its own (`identity`, the robot's user) the node goes in that identity's directory, which
/// `geodns zk init --robot` must have created; else under `hosts/`.
pub async fn register(
    client: &zk::Client,
    layout: &Layout,
    reg: &Registration,
    secure: bool,
    identity: Option<&str>,
) -> Result<String, RegisterError> {
    use geodns_snapshot::access::{self, Node};
    reg.validate()?;
    let (parent, acls) = match identity {
        Some(user) => (layout.robot_dir(user), access::registration_acls(user)),
        None => {
            let parent = layout.hosts();
            match geodns_snapshot::store::ensure_path(client, &parent, Node::Hosts, secure).await {
                Ok(()) => {}
                Err(geodns_snapshot::store::StoreError::Zk { source, .. }) => {
                    return Err(source.into())
                }
                Err(e) => return Err(RegisterError::Invalid(e.to_string())),
            }
            (parent, access::acls(Node::Hosts, secure))
        }
    };
    let prefix = format!("{parent}/{}-", reg.name.trim_end_matches('.'));
    let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::new(&acls));
    let (_, seq) = match client.create(&prefix, &reg.to_bytes(), &opts).await {
        Err(zk::Error::NoNode) if identity.is_some() => {
            return Err(RegisterError::Invalid(format!(
                "{parent} does not exist: the admin sets up this robot's identity with geodns zk init --robot {}=NAMES",
                identity.unwrap_or_default()
            )))
        }
        r => r?,
    };
    Ok(format!("{prefix}{seq}"))
}

/// Keeps `reg` registered until `stop` resolves: connects (retrying with backoff), registers,
/// and registers again in a new session whenever the session expires. On `stop` it closes the
/// session, which removes the node at once.
pub async fn keep_registered(
    zk_settings: &geodns_snapshot::ZkSettings,
    reg: &Registration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RegisterError> {
    let layout = &zk_settings
        .layout()
        .map_err(|e| RegisterError::Invalid(format!("root: {e}")))?;
    reg.validate()?;
    tokio::pin!(stop);
    let mut backoff = geodns_snapshot::backoff::Backoff::new(Duration::from_millis(100));
    loop {
        let client = tokio::select! {
            c = geodns_snapshot::backoff::connect(zk_settings, geodns_snapshot::access::Role::Robot, &mut backoff, "not registered meanwhile") => c,
            _ = &mut stop => return Ok(()),
        };
        let path = match register(
            &client,
            layout,
            reg,
            zk_settings.secure(),
            zk_settings.identity(),
        )
        .await
        {
            Ok(p) => p,
            Err(RegisterError::Invalid(e)) => return Err(RegisterError::Invalid(e)),
            Err(e) => {
                tracing::warn!(error = %e, "registration failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        tracing::info!(%path, session_timeout_ms = client.session_timeout().as_millis() as u64, "registered");
        let mut state = client.state_watcher();
        loop {
            // Deleted while the session lives (by hand, or a whole tree deleted): the presenter
            // would drop this host's records, so register again at once.
            let gone = async {
                loop {
                    match client.check_and_watch_stat(&path).await {
                        Ok((Some(_), w)) => {
                            if w.changed().await.event_type == zk::EventType::NodeDeleted {
                                return;
                            }
                        }
                        Ok((None, _)) => return,
                        // Disconnected: the session state says what comes next.
                        Err(_) => std::future::pending::<()>().await,
                    }
                }
            };
            tokio::select! {
                () = gone => {
                    tracing::warn!(%path, "registration deleted while the session lives; registering again");
                    break;
                }
                s = state.changed() => {
                    if s.is_terminated() {
                        tracing::warn!(state = ?s, "session ended; registering again in a new one");
                        break;
                    }
                    // Reconnected within the session: the node should still be there, but
                    // someone may have deleted it (or the tree) meanwhile; register again if so.
                    if s == zk::SessionState::SyncConnected
                        && matches!(client.check_stat(&path).await, Ok(None))
                    {
                        tracing::warn!(%path, "registration gone after a reconnection; registering again");
                        break;
                    }
                }
                _ = &mut stop => {
                    // Deleting explicitly does not wait for the session close to reach the
                    // ensemble; either way the node is gone before this returns.
                    let _ = client.delete(&path, None).await;
                    drop(client);
                    tracing::info!(%path, "deregistered");
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_bounded_and_exact() {
        let ok = br#"{"name":"h1.prn1.internal.example","addresses":["10.0.0.1"],"services":[{"role":"web","cluster":"prn1","port":80}]}"#;
        assert!(Registration::parse(ok).is_ok());
        let unknown = br#"{"name":"h1.prn1.internal.example","addresses":["10.0.0.1"],"junk":"x"}"#;
        assert!(Registration::parse(unknown).is_err());
        let unknown_service = br#"{"name":"h1.prn1.internal.example","addresses":["10.0.0.1"],"services":[{"role":"web","cluster":"prn1","port":80,"x":1}]}"#;
        assert!(Registration::parse(unknown_service).is_err());
        let many = Registration {
            name: "h1.prn1.internal.example".into(),
            addresses: (0..=MAX_ADDRESSES as u32)
                .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
                .collect(),
            services: Vec::new(),
        };
        assert!(many.validate().is_err());
        let big = format!(
            r#"{{"name":"h1.prn1.internal.example","addresses":["10.0.0.1"],"services":[],"pad":"{}"}}"#,
            "x".repeat(MAX_REGISTRATION_BYTES)
        );
        let e = Registration::parse(big.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
        for bad in ["", "a..b", "not a name!", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("_web._tcp.web.prn1.internal.example.").is_ok());
    }
}
