//! Writing a file so that readers see the old one or the whole new one, never a part, and a
//! crash or power loss after the call returns keeps the new one.
//!
//! Every file geodns hands to another process goes through here: maps, MMDB exports, beacon
//! logs, mapgen reports. A temporary file in the same directory (so the rename stays on one
//! file system), fsync of the data, rename over the target, fsync of the directory (so the
//! rename itself is durable). A failure removes the temporary file and leaves the target as it
//! was; the error keeps its `io::ErrorKind` (a full disk reads as `StorageFull`).

use std::fs::File;
use std::io;
use std::path::Path;

/// Writes `path` by calling `fill` on a fresh temporary file beside it, then makes it durable
/// and renames it into place. The temporary file is named `.<file name>.<random>.tmp`, so
/// directory scans that skip dot files never see it. Returns what `fill` returned.
pub fn write<T>(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<T>) -> io::Result<T> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    write_staged(path, dir, fill)
}

/// [`write()`], with the temporary file in `staging` instead of beside `path`: for directories
/// that readers scan whole (a Parquet dataset), where even a dot file in the middle of being
/// written breaks some readers. `staging` must be on the same file system as `path`, so the
/// final rename stays atomic.
pub fn write_staged<T>(
    path: &Path,
    staging: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
        .to_string_lossy();
    // Only a regular file is replaced: renaming over a symlink, a FIFO, a device or a
    // directory would destroy what the path was (an export to `/dev/full` made it a file).
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a regular file (a symlink, FIFO, device or directory): refusing to replace it",
                    path.display()
                ),
            ));
        }
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(staging)?;
    let out = fill(tmp.as_file_mut())?;
    // A temporary file is private (0600); the file it becomes is read by other users (the
    // server's user reads what mapgen's user wrote). Keep the mode of the file it replaces,
    // else readable by all, as a file created under the usual umask would be.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)?;
    Ok(out)
}

/// Makes the renames and removals in `dir` durable (fsync of the directory itself).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        for path in [&link, &sub, &std::path::PathBuf::from("/dev/null")] {
            let e = write(path, |f| std::io::Write::write_all(f, b"new")).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));
        write(&target, |f| std::io::Write::write_all(f, b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    }
    use std::io::Write;

    #[test]
    fn replaces_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write(&path, |f| f.write_all(b"first")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // A failing fill leaves the old file and no temporary file behind.
        let err = write(&path, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(io::Error::new(io::ErrorKind::StorageFull, "full"))
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.txt"]);
    }

    #[test]
    fn the_file_is_readable_by_others_and_keeps_a_chosen_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.arrow");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        write(&path, |f| f.write_all(b"one")).unwrap();
        assert_eq!(mode(&path), 0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write(&path, |f| f.write_all(b"two")).unwrap();
        assert_eq!(
            mode(&path),
            0o640,
            "an operator's choice survives a rewrite"
        );
    }

    #[test]
    fn a_staged_write_never_shows_in_the_target_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (data, staging) = (dir.path().join("data"), dir.path().join(".incoming"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        write_staged(&data.join("a.parquet"), &staging, |f| {
            assert!(
                names(&data).is_empty(),
                "nothing in the dataset while writing"
            );
            assert_eq!(names(&staging).len(), 1);
            f.write_all(b"whole")
        })
        .unwrap();
        assert_eq!(names(&data), ["a.parquet"]);
        assert!(names(&staging).is_empty());
    }
}
