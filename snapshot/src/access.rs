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
//! | `robots/` | presenter | admin |
//! | `robots/<user>`: a robot identity's names | presenter, that robot | admin; the robot creates and deletes its registrations below |
//! | `health/<pop>` of an announce identity | servers, that announce | that announce (write only) |
//!
//! Nobody else reads or writes anything. Without credentials (a component configured without
//! `password_file`) nodes are created open to anyone, as before; `geodns check` and the logs
//! warn.
//!
//! **Identities of their own.** The shared robot user may delete any registration under
//! `hosts/`, and the shared announce user may write any PoP's health. Where that is too much,
//! `geodns zk init --robot USER=NAMES` gives a robot (a host, or a cluster's hosts) a user and a
//! directory `robots/<USER>` of its own, whose data, written by the admin, lists the names it
//! may register; `--announce USER=POP` creates `health/<POP>` writable by that user alone. A
//! component configured with `user` authenticates as it.

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
pub const TREE: [(&str, Node); 7] = [
    ("hosts", Node::Hosts),
    ("robots", Node::Robots),
    ("human", Node::Human),
    ("presenters", Node::Presenters),
    ("snapshots", Node::Snapshots),
    ("health", Node::Health),
    ("peers", Node::Peers),
];

/// An identity of its own, which `geodns zk init` sets up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A robot user and the names it may register (each with the names below it).
    Robot {
        /// The SASL user.
        user: String,
        /// The names, normalised (lowercase, no final dot).
        names: Vec<String>,
    },
    /// An announce user and the one PoP whose health it writes.
    Announce {
        /// The SASL user.
        user: String,
        /// The PoP.
        pop: String,
    },
}

/// The one rule for a user name with an identity of its own in `role`: robots and announce
/// only; letters, digits, `-`, `_` and `.`, 1 to 64 bytes (it names a ZooKeeper node); never a
/// role's shared user.
pub fn check_identity(role: Role, user: &str) -> Result<(), String> {
    if !matches!(role, Role::Robot | Role::Announce) {
        return Err(format!(
            "only robots (geodns register) and announce take a user of their own, not the {}",
            role.user()
        ));
    }
    let ok = (1..=64).contains(&user.len())
        && user != "."
        && user != ".."
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(format!(
            "{user:?} is not a user name (letters, digits, -, _ and ., 1 to 64 bytes)"
        ));
    }
    if user == Role::Admin.user() || Role::ALL.iter().any(|r| r.user() == user) {
        return Err(format!(
            "{user:?} is a role's shared user: leave user unset to use it"
        ));
    }
    Ok(())
}

/// The names a robot identity's directory holds (its data): one per line.
pub fn render_names(names: &[String]) -> Vec<u8> {
    names.join("\n").into_bytes()
}

/// The names in a robot identity's directory data; empty lines are skipped.
pub fn parse_names(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .lines()
        .map(|l| l.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Creates the tree under `root` with its ACLs, and sets the ACLs of nodes that exist
/// already, then each identity's node (a robot's directory with its names, a PoP's health
/// node): idempotent, run as the admin. Returns the nodes it created or changed.
pub async fn init(
    client: &zk::Client,
    root: &str,
    identities: &[Identity],
) -> Result<Vec<String>, zk::Error> {
    let mut changed = Vec::new();
    let nodes = std::iter::once((root.to_owned(), Node::Root))
        .chain(TREE.iter().map(|(d, n)| (format!("{root}/{d}"), *n)));
    for (path, node) in nodes {
        ensure(client, &path, &acls(node, true), None, &mut changed).await?;
    }
    for id in identities {
        match id {
            Identity::Robot { user, names } => {
                let data = render_names(names);
                let path = format!("{root}/robots/{user}");
                ensure(
                    client,
                    &path,
                    &robot_dir_acls(user),
                    Some(&data),
                    &mut changed,
                )
                .await?;
            }
            Identity::Announce { user, pop } => {
                // Created empty: a server reads an empty node as "not reported yet".
                let path = format!("{root}/health/{pop}");
                ensure(client, &path, &pop_acls(user), None, &mut changed).await?;
            }
        }
    }
    Ok(changed)
}

/// Creates `path` with `want` (and `data`), or sets the ACL and data it should have.
async fn ensure(
    client: &zk::Client,
    path: &str,
    want: &[Acl],
    data: Option<&[u8]>,
    changed: &mut Vec<String>,
) -> Result<(), zk::Error> {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::new(want));
    match client.create(path, data.unwrap_or(b""), &opts).await {
        Ok(_) => changed.push(format!("{path}: created")),
        Err(zk::Error::NodeExists) => {
            let (have, stat) = client.get_acl(path).await?;
            if have != want {
                client.set_acl(path, want, Some(stat.aversion)).await?;
                changed.push(format!("{path}: ACL set"));
            }
            if let Some(data) = data {
                let (now, _) = client.get_data(path).await?;
                if now != data {
                    client.set_data(path, data, None).await?;
                    changed.push(format!("{path}: data set"));
                }
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
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
    /// `<root>/robots`, the parent of the robot identities' directories.
    Robots,
    /// `<root>/peers` and each server's announcement that it serves snapshots to its peers.
    Peers,
}

fn acl(perm: Permission, role: Role) -> Acl {
    user_acl(perm, role.user())
}

fn user_acl(perm: Permission, user: &str) -> Acl {
    Acl::new(perm, AuthId::new("sasl", user))
}

/// The ACL of a robot identity's directory `robots/<user>`: the robot reads it and creates and
/// deletes its registrations below it, but cannot change the names the admin gave it.
pub fn robot_dir_acls(user: &str) -> Vec<Acl> {
    use Permission as P;
    vec![
        acl(P::ALL, Role::Admin),
        user_acl(P::READ | P::CREATE | P::DELETE, user),
        acl(P::READ, Role::Presenter),
    ]
}

/// The ACL of a registration by a robot identity.
pub fn registration_acls(user: &str) -> Vec<Acl> {
    use Permission as P;
    vec![
        acl(P::ALL, Role::Admin),
        user_acl(P::READ | P::WRITE, user),
        acl(P::READ, Role::Presenter),
    ]
}

/// The ACL of a PoP's health node owned by an announce identity: that user writes it, servers
/// read it; only the admin may delete or re-ACL it.
pub fn pop_acls(user: &str) -> Vec<Acl> {
    use Permission as P;
    vec![
        acl(P::ALL, Role::Admin),
        user_acl(P::READ | P::WRITE, user),
        acl(P::READ, Role::Server),
    ]
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
        Node::Robots => out.push(acl(P::READ, Role::Presenter)),
        // Servers share one user: one may remove another's announcement, which costs its
        // peers a fetch from ZooKeeper, never a wrong answer (what peers serve is verified).
        Node::Peers => out.push(acl(rw, Role::Server)),
    }
    out
}

/// Creation options for an ephemeral node of kind `node`.
pub fn ephemeral(node: Node, secure: bool) -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::new(leak(node, secure)))
}

/// Creation options for a persistent node of kind `node`.
pub fn persistent(node: Node, secure: bool) -> zk::CreateOptions<'static> {
    // The options borrow their ACL: leaked once per kind and mode, a handful of small
    // vectors for the life of the process.
    zk::CreateMode::Persistent.with_acls(zk::Acls::new(leak(node, secure)))
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
            Node::Robots,
            Node::Peers,
        ] {
            let a = acls(node, true);
            for entry in &a {
                assert_eq!(entry.scheme(), "sasl", "{node:?}");
                if entry.id() == Role::Server.user() {
                    // Servers write nothing but their own announcements to their peers.
                    let want = match node {
                        Node::Peers => {
                            Permission::READ
                                | Permission::WRITE
                                | Permission::CREATE
                                | Permission::DELETE
                        }
                        _ => Permission::READ,
                    };
                    assert_eq!(entry.permission(), want, "{node:?}");
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

    #[test]
    fn identities_are_for_robots_and_announce_and_never_a_shared_user() {
        assert!(check_identity(Role::Robot, "robot-web.prn1").is_ok());
        assert!(check_identity(Role::Announce, "announce-ams").is_ok());
        for (role, user) in [
            (Role::Server, "server-1"),
            (Role::Presenter, "p2"),
            (Role::Robot, "geodns-presenter"),
            (Role::Robot, "geodns-admin"),
            (Role::Announce, "geodns-announce"),
            (Role::Robot, ""),
            (Role::Robot, ".."),
            (Role::Robot, "a/b"),
            (Role::Robot, &"x".repeat(65)),
        ] {
            assert!(check_identity(role, user).is_err(), "{role:?} {user:?}");
        }
        let names = vec!["prn1.internal.example".to_owned(), "b.example".to_owned()];
        assert_eq!(parse_names(&render_names(&names)), names);
        assert_eq!(parse_names(b"A.Example.\n\n b \n"), ["a.example", "b"]);
    }
}
