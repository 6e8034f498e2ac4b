//! Human zones: zone-file text a person published with `geodns publish`, checked as every
//! server will compile it before it is written, and read back by the presenter.

use std::collections::BTreeMap;

use geodns_snapshot::{store, Layout};
use zookeeper_client as zk;

use crate::config::{norm, Config};
use crate::publication::connect;
use crate::reconcile;
use crate::reconcile::reconcile;
use geodns_snapshot::access::{self, Node, Role};

/// Reads the human zones: origin (normalised) -> text. Nodes for origins that are not internal
/// zones are returned apart, to be reported.
pub(crate) async fn read_humans(
    client: &zk::Client,
    layout: &Layout,
    cfg: &Config,
) -> Result<(BTreeMap<String, String>, Vec<String>), zk::Error> {
    let mut out = BTreeMap::new();
    let mut stray = Vec::new();
    for child in client.list_children(&layout.human()).await? {
        let origin = norm(&child);
        if !cfg.zones.iter().any(|z| norm(&z.origin) == origin) {
            stray.push(origin);
            continue;
        }
        match client.get_data(&layout.human_zone(&origin)).await {
            Ok((data, _)) => {
                out.insert(origin, String::from_utf8_lossy(&data).into_owned());
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((out, stray))
}

/// Checks a human zone text as the servers will compile it: the origin is an internal zone,
/// the SOA and apex NS are left to the presenter, and the text passes the server's loader with
/// the presenter's apex records around it. What this refuses, `geodns publish` refuses.
pub fn check_human(cfg: &Config, origin: &str, text: &str) -> Result<(), String> {
    let origin = norm(origin);
    let zone = cfg
        .zones
        .iter()
        .find(|z| norm(&z.origin) == origin)
        .ok_or_else(|| format!("{origin} is not an internal zone of this presenter's config"))?;
    let owners = reconcile::human_owners(&origin, text)?;
    if let Some(types) = owners.get(&origin) {
        for t in [
            hickory_proto::rr::RecordType::SOA,
            hickory_proto::rr::RecordType::NS,
        ] {
            if types.contains(&t) {
                return Err(format!(
                    "{origin}: {t} at the apex is the presenter's (set it in its config)"
                ));
            }
        }
    }
    let body = reconcile(
        std::slice::from_ref(zone),
        &[],
        &[],
        &[(origin.clone(), text.to_owned())].into(),
        cfg.guard.max_rrset_records,
        &[],
    );
    let full = body.zones[0].render(1);
    geodns_zone::Zone::from_text(&origin, &full, &format!("human zone {origin}"))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Publishes a checked human zone text to ZooKeeper (`geodns publish`).
pub async fn publish_human(cfg: &Config, origin: &str, text: &str) -> Result<(), String> {
    check_human(cfg, origin, text)?;
    if text.len() > geodns_snapshot::format::CHUNK_BYTES {
        return Err(format!(
            "{} bytes: a human zone must fit one ZooKeeper node ({} bytes)",
            text.len(),
            geodns_snapshot::format::CHUNK_BYTES
        ));
    }
    let layout = cfg.zookeeper.layout()?;
    let client = connect(cfg, Role::Human).await?;
    let secure = cfg.zookeeper.secure();
    store::ensure_path(&client, &layout.human(), Node::Human, secure)
        .await
        .map_err(|e| e.to_string())?;
    let path = layout.human_zone(origin);
    match client.set_data(&path, text.as_bytes(), None).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NoNode) => client
            .create(
                &path,
                text.as_bytes(),
                &access::persistent(Node::Human, secure),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("{path}: {e}")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}
