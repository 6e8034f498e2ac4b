//! Where everything lives under the ZooKeeper root (default `/geodns`):
//!
//! ```text
//! <root>/hosts/<name>-<seq>        ephemeral, one per registered host (robots)
//! <root>/human/<origin>            persistent, a reviewed zone's records (humans)
//! <root>/presenters/...            the presenters' leader election (lock recipe)
//! <root>/snapshots/<version>/<i>   the chunks of a published snapshot
//! <root>/snapshot                  the pointer: the one node servers watch
//! <root>/conflicts                 the presenter's last conflict report (JSON)
//! <root>/held                      why the last snapshot was held back, if it was
//! ```

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

/// How a geodns tool reaches ZooKeeper (`[zookeeper]` in the presenter's config,
/// `publish.zookeeper` in `geodns announce`'s): one definition, checked once.
#[derive(Clone, Debug, serde::Deserialize)]
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
}
