//! Who may write what in ZooKeeper: one identity per role, and the ACL of every node geodns
//! creates, in one table.
//!
//! Each component authenticates with SASL (DIGEST-MD5) as the user of its role
//! ([`Role::user`]): `geodns-presenter`, `geodns-server`, `geodns-robot`, `geodns-human`,
//! `geodns-announce`; `geodns zk init` runs as `geodns-admin`, which the ensemble makes its
//! super user. The ACLs, set when a node is created:
//!
//! | node | read | write, create, delete |
//! |---|---|---|
//! | `<root>` | every role | admin; the presenter creates its nodes there (pointer, reports) |
//! | `hosts/`, and each registration | presenter, robots | robots (create and delete their nodes) |
//! | `human/`, and each human zone | presenter, humans | humans |
//! | `presenters/` (the lock) | presenter | presenter |
//! | `snapshots/`, each version and chunk, the pointer | servers, presenter | presenter |
//! | `conflicts`, `held` | presenter, humans | presenter |
//! | `health/`, and each PoP's node | servers, announce | announce |
//!
//! Nobody else reads or writes anything. Without credentials (a component configured without
//! `user`) nodes are created open to anyone, as before; `geodns check` and the logs warn.

use zk::{Acl, AuthId, Permission};
use zookeeper_client as zk;

/// A role, and the SASL user that stands for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `geodns zk init`: creates the tree and its ACLs (the ensemble's super user).
    Admin,
    /// `geodns presenter`.
    Presenter,
    /// `geodns serve`: reads only.
    Server,
    /// `geodns register`.
    Robot,
    /// `geodns publish`.
    Human,
    /// `geodns announce`.
    Announce,
}

impl Role {
    /// Every role but the admin.
    pub const ALL: [Role; 5] = [
        Role::Presenter,
        Role::Server,
        Role::Robot,
        Role::Human,
        Role::Announce,
    ];

    /// The SASL user of the role.
    pub fn user(self) -> &'static str {
        match self {
            Role::Admin => "geodns-admin",
            Role::Presenter => "geodns-presenter",
            Role::Server => "geodns-server",
            Role::Robot => "geodns-robot",
            Role::Human => "geodns-human",
            Role::Announce => "geodns-announce",
        }
    }
}

/// The directories `geodns zk init` creates under the root, with their kinds.
pub const TREE: [(&str, Node); 5] = [
    ("hosts", Node::Hosts),
    ("human", Node::Human),
    ("presenters", Node::Presenters),
    ("snapshots", Node::Snapshots),
    ("health", Node::Health),
];

/// Creates the tree under `root` with its ACLs, and sets the ACLs of nodes that exist
/// already: idempotent, run as the admin. Returns the nodes it created or changed.
pub async fn init(client: &zk::Client, root: &str) -> Result<Vec<String>, zk::Error> {
    let mut changed = Vec::new();
    let nodes = std::iter::once((root.to_owned(), Node::Root))
        .chain(TREE.iter().map(|(d, n)| (format!("{root}/{d}"), *n)));
    for (path, node) in nodes {
        let want = acls(node, true);
        match client.create(&path, b"", &persistent(node, true)).await {
            Ok(_) => changed.push(format!("{path}: created")),
            Err(zk::Error::NodeExists) => {
                let (have, stat) = client.get_acl(&path).await?;
                if have != want {
                    client.set_acl(&path, &want, Some(stat.aversion)).await?;
                    changed.push(format!("{path}: ACL set"));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(changed)
}

/// The kinds of node geodns creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// `<root>`.
    Root,
    /// `<root>/hosts` and each registration below it.
    Hosts,
    /// `<root>/human` and each human zone below it.
    Human,
    /// `<root>/presenters` and the lock's nodes.
    Presenters,
    /// `<root>/snapshots`, each version, each chunk, and the pointer `<root>/snapshot`.
    Snapshots,
    /// `<root>/conflicts` and `<root>/held`.
    Reports,
    /// `<root>/health` and each PoP's node.
    Health,
}

fn acl(perm: Permission, role: Role) -> Acl {
    Acl::new(perm, AuthId::new("sasl", role.user()))
}

/// The ACL a node of kind `node` is created with; `secure` is whether the creating component
/// authenticated (without, nodes are open to anyone, as before authentication existed).
pub fn acls(node: Node, secure: bool) -> Vec<Acl> {
    if !secure {
        return zk::Acls::anyone_all().to_vec();
    }
    use Permission as P;
    let rw = P::READ | P::WRITE | P::CREATE | P::DELETE;
    let admin = acl(P::ALL, Role::Admin);
    let mut out = vec![admin];
    match node {
        Node::Root => {
            out.extend(
                Role::ALL
                    .iter()
                    .filter(|r| **r != Role::Presenter)
                    .map(|r| acl(P::READ, *r)),
            );
            out.push(acl(P::READ | P::CREATE, Role::Presenter));
        }
        Node::Hosts => out.extend([acl(rw, Role::Robot), acl(P::READ, Role::Presenter)]),
        Node::Human => out.extend([acl(rw, Role::Human), acl(P::READ, Role::Presenter)]),
        Node::Presenters => out.push(acl(rw, Role::Presenter)),
        Node::Snapshots => out.extend([acl(rw, Role::Presenter), acl(P::READ, Role::Server)]),
        Node::Reports => out.extend([acl(rw, Role::Presenter), acl(P::READ, Role::Human)]),
        Node::Health => out.extend([acl(rw, Role::Announce), acl(P::READ, Role::Server)]),
    }
    out
}

/// Creation options for a persistent node of kind `node`.
pub fn persistent(node: Node, secure: bool) -> zk::CreateOptions<'static> {
    // The options borrow their ACL: leaked once per kind and mode, a handful of small
    // vectors for the life of the process.
    zk::CreateMode::Persistent.with_acls(zk::Acls::new(leak(node, secure)))
}

/// Creation options for an ephemeral sequential node of kind `node` (a registration).
pub fn ephemeral_sequential(node: Node, secure: bool) -> zk::CreateOptions<'static> {
    zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::new(leak(node, secure)))
}

/// The ACLs made so far, by kind and mode.
type Made = Vec<((Node, bool), &'static [Acl])>;

fn leak(node: Node, secure: bool) -> &'static [Acl] {
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<Made>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, a)) = cache.iter().find(|(k, _)| *k == (node, secure)) {
        return a;
    }
    let a: &'static [Acl] = Box::leak(acls(node, secure).into_boxed_slice());
    cache.push(((node, secure), a));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_only_read_and_nobody_but_the_admin_writes_the_root() {
        for node in [
            Node::Root,
            Node::Hosts,
            Node::Human,
            Node::Presenters,
            Node::Snapshots,
            Node::Reports,
            Node::Health,
        ] {
            let a = acls(node, true);
            for entry in &a {
                assert_eq!(entry.scheme(), "sasl", "{node:?}");
                if entry.id() == Role::Server.user() {
                    assert_eq!(entry.permission(), Permission::READ, "{node:?}");
                }
            }
            assert!(a.iter().any(|e| e.id() == Role::Admin.user()));
        }
        let root = acls(Node::Root, true);
        assert!(root
            .iter()
            .filter(|e| e.id() != Role::Admin.user() && e.id() != Role::Presenter.user())
            .all(|e| e.permission() == Permission::READ));
        assert_eq!(acls(Node::Hosts, false), zk::Acls::anyone_all().to_vec());
    }
}
