//! The registrations the presenter has seen (robots' ephemeral nodes), with the time each
//! vanished, so a host that flaps keeps its records for the grace period.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use geodns_register::{node_name, Registration};
use geodns_snapshot::Layout;
use zookeeper_client as zk;

use crate::reconcile::Robot;

/// The registrations seen, with the time each vanished.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) known: BTreeMap<String, (u64, Registration)>,
    pub(crate) vanished: HashMap<String, Instant>,
    pub(crate) invalid: BTreeMap<String, String>,
}

impl Registry {
    /// Reads the hosts tree: new nodes' data, vanished nodes stamped. A failed read returns the
    /// error and changes nothing.
    pub(crate) async fn refresh(
        &mut self,
        client: &zk::Client,
        layout: &Layout,
    ) -> Result<(), zk::Error> {
        // No hosts directory (a deleted tree): every registration vanished, which the grace
        // period and the drop guard handle; robots create it again as they register again.
        let children: BTreeSet<String> = match client.list_children(&layout.hosts()).await {
            Ok(c) => c.into_iter().collect(),
            Err(zk::Error::NoNode) => BTreeSet::new(),
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        for node in &children {
            if self.known.contains_key(node) || self.invalid.contains_key(node) {
                self.vanished.remove(node);
                continue;
            }
            let Some((_, seq)) = node_name(node) else {
                self.invalid
                    .insert(node.clone(), "not <name>-<sequence>".into());
                continue;
            };
            match client.get_data(&format!("{}/{node}", layout.hosts())).await {
                Ok((data, _)) => match Registration::parse(&data) {
                    Ok(reg) => {
                        self.known.insert(node.clone(), (seq, reg));
                    }
                    Err(e) => {
                        self.invalid.insert(node.clone(), e.to_string());
                    }
                },
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        for node in self.known.keys() {
            if !children.contains(node) {
                self.vanished.entry(node.clone()).or_insert(now);
            }
        }
        self.invalid.retain(|n, _| children.contains(n));
        Ok(())
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
            let gone: Vec<String> = self
                .vanished
                .iter()
                .filter(|(_, t)| now.duration_since(**t) >= cutoff)
                .map(|(n, _)| n.clone())
                .collect();
            for n in gone {
                self.vanished.remove(&n);
                self.known.remove(&n);
            }
        }
        self.vanished.values().map(|t| *t + grace).min()
    }

    pub(crate) fn robots(&self) -> Vec<Robot> {
        self.known
            .iter()
            .map(|(node, (seq, reg))| Robot {
                node: node.clone(),
                seq: *seq,
                reg: reg.clone(),
                live: !self.vanished.contains_key(node),
            })
            .collect()
    }
}
