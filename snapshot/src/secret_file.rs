//! Secrets on disk (ZooKeeper passwords, the presenter's signing key): read only from a file
//! its owner alone may read, so a secret anyone on the host can copy is refused rather than
//! used.

use std::path::Path;

/// The text of the secret file at `path` (`what` names it in errors: "a password file").
pub fn read(path: &Path, what: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let name = path.display();
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{name}: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{name}: mode {:o}: {what} must be readable by its owner only (chmod 600)",
            mode & 0o777
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))
}
