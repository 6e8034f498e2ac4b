//! Retrying ZooKeeper: one backoff for every component that reconnects or retries (the
//! server's followers, the presenter, robots, announce), so a recovering ensemble is not
//! hammered by one of them and left waiting by another. Each delay doubles, from a first one,
//! up to [`Backoff::MAX`]; success resets it. [`connect`] is the one reconnect loop built on it.

use std::time::Duration;

use zookeeper_client as zk;

use crate::access::Role;
use crate::layout::ZkSettings;

/// A doubling delay, capped.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    first: Duration,
    next: Duration,
}

impl Backoff {
    /// The longest delay between two attempts.
    pub const MAX: Duration = Duration::from_secs(10);

    /// Starts at `first`.
    pub fn new(first: Duration) -> Backoff {
        Backoff { first, next: first }
    }

    /// The delay the next attempt waits (for logs), without taking it.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Takes the delay to wait now; the one after doubles, up to [`Backoff::MAX`].
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// After a success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A random wait from zero to `max`, so a fleet that lost ZooKeeper together does not come
/// back together.
pub fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    if max.is_zero() {
        return max;
    }
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_nanos(r % max.as_nanos().max(1) as u64)
}

/// Why one attempt to reach ZooKeeper failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The client library's error.
    #[error(transparent)]
    ZooKeeper(#[from] zk::Error),
    /// No session within twice the session timeout (an ensemble member that accepts the
    /// connection and says nothing).
    #[error("no session within {0:?}")]
    TimedOut(Duration),
    /// The password file cannot be used.
    #[error("{0}")]
    Credentials(String),
}

/// One attempt at a session as `role`: `zk`'s session timeout asked of the ensemble, the
/// connection and the whole attempt bounded by it (a silent member never stalls a component for
/// longer than its session could live), authenticated with the role's user and password when
/// `zk` has a password file (the role's shared user, or `zk`'s own `user`).
pub async fn connect_once(zk: &ZkSettings, role: Role) -> Result<zk::Client, ConnectError> {
    let session_timeout = Duration::from_millis(zk.session_timeout_ms);
    let mut connector = zk::Client::connector()
        .with_session_timeout(session_timeout)
        .with_connection_timeout(session_timeout);
    if let Some(password) = zk.password().map_err(ConnectError::Credentials)? {
        connector = connector.with_sasl(zk::SaslOptions::digest_md5(
            zk.user(role).to_owned(),
            password,
        ));
    }
    match tokio::time::timeout(session_timeout * 2, connector.connect(&zk.connect)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ConnectError::TimedOut(session_timeout * 2)),
    }
}

/// Connects as `role`, retrying until a session is established: each failure is logged with
/// `while_down` (what the component does meanwhile, e.g. "serving the snapshot in force"),
/// then waits `backoff`'s next delay and up to as much again at random. The caller resets
/// `backoff` once the session has done its work (a session that connects and then fails at
/// once must not retry at full speed).
pub async fn connect(
    zk: &ZkSettings,
    role: Role,
    backoff: &mut Backoff,
    while_down: &str,
) -> zk::Client {
    loop {
        match connect_once(zk, role).await {
            Ok(client) => return client,
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = backoff.peek().as_millis() as u64, "ZooKeeper unreachable; {while_down}");
                let d = backoff.next_delay();
                tokio::time::sleep(d + jitter(d)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(100));
    }
}
