//! Where the PoP's health goes for the DNS: the node `<root>/health/<pop>` in ZooKeeper, kept
//! equal to the latest health across reconnects, and the server's health file.

use geodns_snapshot::access::{self, Node, Role};
use std::time::Duration;

use geodns_snapshot::health_file;
use geodns_snapshot::pophealth::PopHealth;
use tokio::sync::watch;
use zookeeper_client as zk;

pub(crate) fn write_health_file(path: &std::path::Path, h: &PopHealth) -> std::io::Result<()> {
    let text = health_file::render(&h.pop, h.state);
    geomap::atomic_file::write(path, |f| std::io::Write::write_all(f, text.as_bytes()))
}

/// Keeps `<root>/health/<pop>` equal to the latest health, reconnecting with backoff.
pub(crate) async fn publish_zk(
    zkcfg: geodns_snapshot::ZkSettings,
    pop: String,
    mut rx: watch::Receiver<Option<PopHealth>>,
) {
    let layout = zkcfg.layout().expect("checked with the config");
    let dir = geodns_snapshot::pophealth::dir(&layout);
    let path = format!("{dir}/{pop}");
    let mut backoff = geodns_snapshot::backoff::Backoff::new(Duration::from_millis(100));
    loop {
        let client = geodns_snapshot::backoff::connect(
            &zkcfg,
            Role::Announce,
            &mut backoff,
            "health not published",
        )
        .await;
        let opts = access::persistent(Node::Health, zkcfg.secure());
        // An identity of its own writes only the node `geodns zk init --announce` made for it.
        let own = zkcfg.identity();
        if own.is_none() {
            if let Err(e) =
                geodns_snapshot::store::ensure_path(&client, &dir, Node::Health, zkcfg.secure())
                    .await
            {
                tracing::warn!(error = %e, "cannot create {dir}");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        }
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(h) = current {
                let data = h.encode();
                let res = match client.set_data(&path, &data, None).await {
                    Err(zk::Error::NoNode) if own.is_none() => {
                        client.create(&path, &data, &opts).await.map(|_| ())
                    }
                    Err(zk::Error::NoNode) => {
                        tracing::error!(
                            "{path} does not exist: the admin sets up this PoP's identity with geodns zk init --announce {}={pop}; health not published meanwhile",
                            own.unwrap_or_default()
                        );
                        Err(zk::Error::NoNode)
                    }
                    r => r.map(|_| ()),
                };
                if let Err(e) = res {
                    tracing::warn!(error = %e, "publishing health failed; reconnecting");
                    tokio::time::sleep(backoff.next_delay()).await;
                    break;
                }
                backoff.reset();
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
