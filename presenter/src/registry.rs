//! The registrations the presenter has seen (robots' ephemeral nodes), with the time each
//! vanished, so a host that flaps keeps its records for the grace period.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use geodns_register::{node_name, Registration};
use geodns_snapshot::{access, Layout};
use zookeeper_client as zk;

use crate::reconcile::Robot;

/// The registrations seen, with the time each vanished. Hash maps, and registrations shared
/// with the reconciliation: with 100k hosts every change reads them all.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) known: HashMap<Arc<str>, (u64, Arc<Registration>)>,
    pub(crate) vanished: HashMap<Arc<str>, Instant>,
    pub(crate) invalid: HashMap<String, String>,
    /// The names each robot identity may register, by key prefix (`<user>/`), as last read.
    identity_names: BTreeMap<String, Arc<[String]>>,
    /// The registrations that appeared, went or vanished since [`Registry::take_changed`].
    changed: HashSet<Arc<str>>,
    /// Whether something changed that concerns many registrations (an identity's names).
    everything: bool,
}

/// The children of `dir`, none if it does not exist.
async fn list(client: &zk::Client, dir: &str) -> Result<Vec<String>, zk::Error> {
    match client.list_children(dir).await {
        Ok(c) => Ok(c),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl Registry {
    /// Reads the registrations, under `hosts/` (the shared robot user) and in each robot
    /// identity's directory under `robots/` (keyed `<user>/<node>`, with the names the admin
    /// gave the identity): new nodes' data, vanished nodes stamped. A failed read returns the
    /// error and changes nothing.
    pub(crate) async fn refresh(
        &mut self,
        client: &zk::Client,
        layout: &Layout,
    ) -> Result<(), zk::Error> {
        // No hosts directory (a deleted tree): every registration vanished, which the grace
        // period and the drop guard handle; robots create it again as they register again.
        let mut dirs: Vec<(String, String, Option<Vec<String>>)> =
            vec![(layout.hosts(), String::new(), None)];
        for user in list(client, &layout.robots()).await? {
            let dir = layout.robot_dir(&user);
            match client.get_data(&dir).await {
                Ok((data, _)) => {
                    let names = access::parse_names(&data);
                    dirs.push((dir, format!("{user}/"), Some(names)));
                }
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        let mut children: HashSet<String> = HashSet::new();
        let mut names_of = BTreeMap::new();
        for (dir, key_prefix, names) in dirs {
            for node in list(client, &dir).await? {
                let key = if key_prefix.is_empty() {
                    node.clone()
                } else {
                    format!("{key_prefix}{node}")
                };
                let seen = self.known.contains_key(key.as_str()) || self.invalid.contains_key(&key);
                children.insert(key.clone());
                if seen {
                    continue;
                }
                self.admit(client, &dir, &node, key).await?;
            }
            if let Some(names) = names {
                names_of.insert(key_prefix, Arc::from(names));
            }
        }
        let now = Instant::now();
        for node in self.known.keys() {
            if children.contains(&**node) {
                if self.vanished.remove(node).is_some() {
                    self.changed.insert(node.clone());
                }
            } else if !self.vanished.contains_key(node) {
                self.vanished.insert(node.clone(), now);
                self.changed.insert(node.clone());
            }
        }
        self.invalid.retain(|n, _| children.contains(n));
        if self.identity_names != names_of {
            self.everything = true;
        }
        self.identity_names = names_of;
        Ok(())
    }

    /// Reads one registration that appeared: `dir/node`, known as `key`.
    async fn admit(
        &mut self,
        client: &zk::Client,
        dir: &str,
        node: &str,
        key: String,
    ) -> Result<(), zk::Error> {
        if node_name(node).is_none() {
            self.invalid.insert(key, "not <name>-<sequence>".into());
            return Ok(());
        }
        match client.get_data(&format!("{dir}/{node}")).await {
            // Creation order across every directory: the node's creation zxid.
            Ok((data, stat)) => match Registration::parse(&data) {
                Ok(reg) => {
                    let key: Arc<str> = key.into();
                    self.changed.insert(key.clone());
                    self.known.insert(key, (stat.czxid as u64, Arc::new(reg)));
                }
                Err(e) => {
                    self.invalid.insert(key, e.to_string());
                }
            },
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Applies the node events of the persistent watches on `hosts` and `robots` since the
    /// last read: a registration created is read, one deleted vanishes. The rest is as
    /// [`Registry::refresh`] would find it, without listing every registration. `false`: an
    /// event needs a whole read (a directory itself, an identity's names), call `refresh`.
    pub(crate) async fn apply(
        &mut self,
        client: &zk::Client,
        layout: &Layout,
        events: &[zk::WatchedEvent],
    ) -> Result<bool, zk::Error> {
        let hosts = format!("{}/", layout.hosts());
        let robots = format!("{}/", layout.robots());
        let now = Instant::now();
        for e in events {
            let (dir, node, key) = if let Some(node) = e.path.strip_prefix(&hosts) {
                (layout.hosts(), node.to_owned(), node.to_owned())
            } else if let Some(rest) = e.path.strip_prefix(&robots) {
                let Some((user, node)) = rest.split_once('/') else {
                    // An identity's directory: its names may have changed.
                    return Ok(false);
                };
                if !self.identity_names.contains_key(&format!("{user}/")) {
                    return Ok(false);
                }
                (
                    layout.robot_dir(user),
                    node.to_owned(),
                    format!("{user}/{node}"),
                )
            } else if e.event_type == zk::EventType::Session {
                continue;
            } else {
                // A directory itself came or went.
                return Ok(false);
            };
            if node.contains('/') {
                // Nothing lives below a registration; read everything rather than guess.
                return Ok(false);
            }
            match e.event_type {
                zk::EventType::NodeCreated => {
                    // A node of a name seen before is a new node (sequence numbers start
                    // again in a tree deleted and made anew): read it afresh.
                    if let Some((k, _)) = self.known.remove_entry(key.as_str()) {
                        self.changed.insert(k);
                    }
                    self.vanished.remove(key.as_str());
                    self.invalid.remove(&key);
                    self.admit(client, &dir, &node, key).await?;
                }
                zk::EventType::NodeDeleted => {
                    if let Some((k, _)) = self.known.get_key_value(key.as_str()) {
                        if !self.vanished.contains_key(k) {
                            self.vanished.insert(k.clone(), now);
                            self.changed.insert(k.clone());
                        }
                    }
                    self.invalid.remove(&key);
                }
                _ => {}
            }
        }
        Ok(true)
    }

    /// Forgets registrations that vanished longer than `grace` ago, and with them those that
    /// vanished within the last quarter of a grace period of them: hosts that go together leave
    /// the snapshot together, so the drop guard judges a mass deregistration as one. Returns
    /// when the next one will be due.
    pub(crate) fn expire(&mut self, grace: Duration) -> Option<Instant> {
        let now = Instant::now();
        let due = self
            .vanished
            .values()
            .any(|t| now.duration_since(*t) >= grace);
        if due {
            let cutoff = grace - grace / 4;
            let gone: Vec<Arc<str>> = self
                .vanished
                .iter()
                .filter(|(_, t)| now.duration_since(**t) >= cutoff)
                .map(|(n, _)| n.clone())
                .collect();
            for n in gone {
                self.vanished.remove(&n);
                self.known.remove(&n);
                self.changed.insert(n);
            }
        }
        self.vanished.values().map(|t| *t + grace).min()
    }

    /// Every registration known.
    pub(crate) fn robots(&self) -> Vec<Robot> {
        self.known.keys().filter_map(|k| self.robot(k)).collect()
    }

    /// The registration of node `key`, if known.
    fn robot(&self, key: &str) -> Option<Robot> {
        let (node, (seq, reg)) = self.known.get_key_value(key)?;
        Some(Robot {
            node: node.clone(),
            seq: *seq,
            reg: reg.clone(),
            live: !self.vanished.contains_key(node),
            names: node.split_once('/').map(|(user, _)| {
                self.identity_names
                    .get(&format!("{user}/"))
                    .cloned()
                    .unwrap_or_else(|| Arc::from(Vec::new()))
            }),
        })
    }

    /// The registrations changed since the last call, each as it is now (`None`: gone), for
    /// [`crate::reconcile::Reconciler::update`]; `None` when everything must be taken again
    /// (an identity's names changed).
    pub(crate) fn take_changed(&mut self) -> Option<Vec<(Arc<str>, Option<Robot>)>> {
        let changed = std::mem::take(&mut self.changed);
        if std::mem::take(&mut self.everything) {
            return None;
        }
        Some(
            changed
                .into_iter()
                .map(|k| {
                    let r = self.robot(&k);
                    (k, r)
                })
                .collect(),
        )
    }
}
