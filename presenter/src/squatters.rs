//! Squatters: persistent nodes in the presenters' lock directory that no presenter session
//! owns and that keep every presenter waiting; found while waiting, removed on request.

use std::time::Duration;

use zookeeper_client as zk;

use crate::config::Config;
use crate::publication::connect;

/// How often a presenter waiting for the lock looks for squatters.
pub(crate) const SQUATTER_CHECK: Duration = Duration::from_secs(2);

/// The nodes under the presenters' lock directory that no session owns (persistent nodes):
/// the lock recipe's nodes are ephemeral, so these can only block it.
pub(crate) async fn squatters(client: &zk::Client, dir: &str) -> Result<Vec<String>, zk::Error> {
    let mut out = Vec::new();
    for child in client.list_children(dir).await? {
        let path = format!("{dir}/{child}");
        if let Some(stat) = client.check_stat(&path).await? {
            if stat.ephemeral_owner == 0 {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// Removes the nodes that squat the presenters' lock (`geodns presenter --remove-squatters`),
/// returning them. Only persistent nodes go: a live presenter's ephemeral node is never
/// touched.
pub async fn remove_squatters(cfg: &Config) -> Result<Vec<String>, String> {
    let layout = cfg.zookeeper.layout()?;
    let client = connect(cfg, geodns_snapshot::access::Role::Presenter).await?;
    let dir = layout.presenters();
    let found = match squatters(&client, &dir).await {
        Ok(f) => f,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(e) => return Err(format!("{dir}: {e}")),
    };
    for path in &found {
        match client.delete(path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(format!("{path}: {e}")),
        }
    }
    Ok(found)
}
