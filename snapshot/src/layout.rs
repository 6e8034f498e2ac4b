//! Where everything lives under the ZooKeeper root (default `/geodns`):
//!
//! ```text
//! <root>/hosts/<name>-<seq>        ephemeral, one per registered host (robots' shared user)
//! <root>/robots/<user>             one robot identity's names; under it, its registrations
//! <root>/robots/<user>/<name>-<seq> ephemeral, one per host registered by that identity
//! <root>/human/<origin>            persistent, a reviewed zone's records (humans)
//! <root>/presenters/...            the presenters' leader election (lock recipe)
//! <root>/snapshots/<version>       a whole published snapshot: its pointer (data), chunks below
//! <root>/snapshots/<version>/<i>   the chunks of a published snapshot
//! <root>/snapshots/deltas/<version> the change from version - 1, sealed (`delta::Seal`)
//! <root>/snapshot                  the pointer: the one node servers watch
//! <root>/conflicts                 the presenter's last conflict report (JSON)
//! <root>/held                      why the last snapshot was held back, if it was
//! <root>/health/<pop>              one PoP's health (announce)
//! <root>/peers/<host:port>         ephemeral, a server that serves snapshots to its peers
//! ```

use crate::access::Role;

/// Paths under one root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// A layout under `root` (absolute, no trailing slash; `/` is not allowed).
    pub fn new(root: &str) -> Result<Layout, String> {
        let root = root.trim_end_matches('/');
        if !root.starts_with('/') || root.is_empty() {
            return Err(format!(
                "ZooKeeper root {root:?} must be an absolute path below /"
            ));
        }
        Ok(Layout {
            root: root.to_owned(),
        })
    }

    /// The root itself.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Parent of host registrations.
    pub fn hosts(&self) -> String {
        format!("{}/hosts", self.root)
    }

    /// Parent of the robot identities' directories.
    pub fn robots(&self) -> String {
        format!("{}/robots", self.root)
    }

    /// The directory of one robot identity: its registrations, and (its data) the names it may
    /// register, one per line.
    pub fn robot_dir(&self, user: &str) -> String {
        format!("{}/robots/{user}", self.root)
    }

    /// Parent of human zones.
    pub fn human(&self) -> String {
        format!("{}/human", self.root)
    }

    /// One human zone's node.
    pub fn human_zone(&self, origin: &str) -> String {
        format!("{}/human/{}", self.root, origin.trim_end_matches('.'))
    }

    /// The presenters' election node.
    pub fn presenters(&self) -> String {
        format!("{}/presenters", self.root)
    }

    /// Parent of published snapshots.
    pub fn snapshots(&self) -> String {
        format!("{}/snapshots", self.root)
    }

    /// The node holding one version's chunks.
    pub fn version(&self, version: u64) -> String {
        format!("{}/snapshots/{version:020}", self.root)
    }

    /// One chunk.
    pub fn chunk(&self, version: u64, i: u32) -> String {
        format!("{}/{i:05}", self.version(version))
    }

    /// Parent of published deltas: under the snapshots' node, so a tree `geodns zk init` made
    /// before deltas takes them with the snapshots' ACL.
    pub fn deltas(&self) -> String {
        format!("{}/snapshots/deltas", self.root)
    }

    /// The delta that makes `version` (from `version - 1`).
    pub fn delta(&self, version: u64) -> String {
        format!("{}/snapshots/deltas/{version:020}", self.root)
    }

    /// Parent of the servers' announcements that they serve snapshots to their peers.
    pub fn peers(&self) -> String {
        format!("{}/peers", self.root)
    }

    /// The pointer servers watch.
    pub fn pointer(&self) -> String {
        format!("{}/snapshot", self.root)
    }

    /// The conflict report.
    pub fn conflicts(&self) -> String {
        format!("{}/conflicts", self.root)
    }

    /// Why the last snapshot was held back (empty when it was not).
    pub fn held(&self) -> String {
        format!("{}/held", self.root)
    }
}

/// How a geodns tool reaches ZooKeeper (`[zookeeper]` in the presenter's and the server's
/// config, `publish.zookeeper` in `geodns announce`'s): one definition, checked once.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZkSettings {
    /// Connect string, `host:port,host:port`.
    pub connect: String,
    /// Root of geodns's nodes. Default `/geodns`.
    #[serde(default = "default_root")]
    pub root: String,
    /// Session timeout, ms (the ensemble bounds it to 2-20 ticks). Default 10000.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// A file holding the password of this component's role (SASL DIGEST-MD5; the user is the
    /// role's, [`crate::access::Role::user`]), readable by its owner only. Unset: the
    /// component does not authenticate and the nodes it creates are open to anyone.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// The SASL user, for a robot or an announce process with an identity of its own (set up
    /// by `geodns zk init --robot` or `--announce`), so that one host or PoP cannot touch
    /// another's nodes. Unset: the role's shared user.
    #[serde(default)]
    pub user: Option<String>,
}

fn default_root() -> String {
    "/geodns".into()
}

fn default_session_timeout_ms() -> u64 {
    10_000
}

impl ZkSettings {
    /// The paths under the root, or why the root is not one.
    pub fn layout(&self) -> Result<Layout, String> {
        Layout::new(&self.root)
    }

    /// Checks every field for a component of `role`: the connect string, the session timeout,
    /// the root, the password file and the user (an identity of its own is for robots and
    /// announce only, and needs a password), as `(key, problem)`.
    pub fn check(&self, role: Role) -> Result<Layout, (&'static str, String)> {
        check_connect(&self.connect).map_err(|e| ("connect", e))?;
        check_session_timeout_ms(self.session_timeout_ms).map_err(|e| ("session_timeout_ms", e))?;
        self.password().map_err(|e| ("password_file", e))?;
        if let Some(user) = &self.user {
            crate::access::check_identity(role, user).map_err(|e| ("user", e))?;
            if self.password_file.is_none() {
                return Err(("user", format!("{user:?} needs a password_file")));
            }
        }
        self.layout().map_err(|e| ("root", e))
    }

    /// The SASL user this component authenticates as, in `role`.
    pub fn user(&self, role: Role) -> &str {
        self.user.as_deref().unwrap_or(role.user())
    }

    /// The identity of its own this component has (its `user`), if any.
    pub fn identity(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// A relative password file made relative to `base` (the config file's directory).
    pub fn resolve(&mut self, base: &std::path::Path) {
        if let Some(p) = &mut self.password_file {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Whether the component authenticates (and creates nodes with the role ACLs).
    pub fn secure(&self) -> bool {
        self.password_file.is_some()
    }

    /// The password, read from `password_file` (refused if others may read it).
    pub fn password(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let name = path.display();
        let text = crate::secret_file::read(path, "a password file")?;
        let password = text.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            return Err(format!("{name}: empty"));
        }
        Ok(Some(password))
    }
}

/// Longest session timeout a tool asks for, ms: an hour. (The client library sends it as a
/// 32-bit number: 2^31 ms and more once silently became 1 s.)
pub const MAX_SESSION_TIMEOUT_MS: u64 = 3_600_000;

/// A session timeout from 1 ms to [`MAX_SESSION_TIMEOUT_MS`] (the ensemble bounds what it
/// grants to 2-20 of its ticks).
pub fn check_session_timeout_ms(ms: u64) -> Result<(), String> {
    if (1..=MAX_SESSION_TIMEOUT_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!("{ms} is not from 1 to {MAX_SESSION_TIMEOUT_MS} ms"))
    }
}

/// A ZooKeeper connect string: `host:port` separated by commas, at least one, each port a
/// number from 1 to 65535, an optional chroot (`/path`) at the end. Checked where it enters,
/// so a typo is an error at once instead of silent retries.
pub fn check_connect(connect: &str) -> Result<(), String> {
    let (servers, chroot) = match connect.find('/') {
        Some(i) => (&connect[..i], Some(&connect[i..])),
        None => (connect, None),
    };
    if servers.trim().is_empty() {
        return Err(format!("{connect:?}: no server (want host:port,host:port)"));
    }
    for server in servers.split(',') {
        let (host, port) = server
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| format!("{connect:?}: {server:?} is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        let host_ok = !host.is_empty()
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !host_ok || !port_ok {
            return Err(format!("{connect:?}: {server:?} is not host:port"));
        }
    }
    if let Some(c) = chroot {
        Layout::new(c).map_err(|e| format!("{connect:?}: chroot: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings() {
        for ok in [
            "127.0.0.1:2181",
            "zk1:2181,zk2:2181, zk3.example:2181",
            "[::1]:2181",
            "a:1/chroot",
        ] {
            assert_eq!(check_connect(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            " ",
            "zk1",
            "zk1:",
            "zk1:0",
            "zk1:99999",
            "zk 1:2181",
            ":2181",
            "zk1:2181,",
        ] {
            assert!(check_connect(bad).is_err(), "{bad:?}");
        }
        assert!(check_session_timeout_ms(1u64 << 31).is_err());
        assert!(check_session_timeout_ms(0).is_err());
        assert!(check_session_timeout_ms(10_000).is_ok());
    }
}
