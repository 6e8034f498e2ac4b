//! Rows split into partitions by a hash, so each later step holds one partition at a time:
//! this is what bounds mapgen's memory whatever the size of the logs.
//!
//! With one partition the rows stay in memory; with more, each partition is an Arrow IPC file
//! (uncompressed: it is read back once, soon, from the page cache) in the run's [`Scratch`]
//! directory, removed when the partitions are dropped.
//!
//! A run killed with `kill -9` cannot remove its files. Each run therefore holds a lock on its
//! scratch directory, and the next run removes every `geodns-mapgen-*` directory under the same
//! `--tmp-dir` whose lock nobody holds: only directories of dead runs, never those of a run
//! going on beside it.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use polars::io::ipc::{BatchedWriter, IpcReader, IpcWriter};
use polars::prelude::*;
use polars_arrow::io::ipc::write::default_ipc_fields;

/// A row type that can be buffered and turned into a frame.
pub trait Record: Sized {
    /// The rows as one frame (with a fixed schema).
    fn frame(rows: &[Self]) -> PolarsResult<DataFrame>;
}

/// Rows buffered per partition before they become a frame: big enough for cheap frames, small
/// enough that the buffers of [`MAX_PARTITIONS`] partitions stay within a few hundred MB.
const BUFFER_ROWS: usize = 16 * 1024;

/// At most this many partitions (each an open file per table while filling), whatever the
/// input: beyond it, partitions grow instead.
pub const MAX_PARTITIONS: usize = 256;

/// Prefix of every run's scratch directory.
const SCRATCH_PREFIX: &str = "geodns-mapgen-";
/// The lock file inside it; held (flock) for the run's whole life.
const LOCK_FILE: &str = "lock";

/// One run's scratch directory, locked while it lives and removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    /// Removes the scratch directories that dead runs left under `tmp`, then makes this run's.
    /// Returns it with the bytes removed.
    pub fn new(tmp: &Path) -> std::io::Result<(Scratch, u64)> {
        let removed = remove_stale(tmp);
        let dir = tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir_in(tmp)?;
        let lock = File::create(dir.path().join(LOCK_FILE))?;
        fs4::FileExt::lock(&lock)?;
        Ok((Scratch { dir, _lock: lock }, removed))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes scratch directories under `tmp` whose lock can be taken (their run is gone), and
/// returns the bytes freed. Best effort: what cannot be removed is left, with a warning.
fn remove_stale(tmp: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let mut freed = 0;
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(SCRATCH_PREFIX) || !path.is_dir() {
            continue;
        }
        // A directory without a lock file is one being created right now, or not ours.
        let Ok(lock) = File::open(path.join(LOCK_FILE)) else {
            continue;
        };
        if fs4::FileExt::try_lock(&lock).is_err() {
            continue; // a live run holds it
        }
        let bytes = dir_bytes(&path);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::warn!(dir = %path.display(), bytes, "removed spill files left by a run that did not finish");
                freed += bytes;
            }
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "cannot remove spill files left by a run that did not finish")
            }
        }
    }
    freed
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

enum Store {
    Memory(Vec<DataFrame>),
    File(PathBuf, Option<Box<BatchedWriter<BufWriter<File>>>>),
}

/// Partitions being filled.
pub struct Partitions<R> {
    buffers: Vec<Vec<R>>,
    stores: Vec<Store>,
    _dir: Option<tempfile::TempDir>,
}

impl<R: Record> Partitions<R> {
    /// `n` partitions (1 to [`MAX_PARTITIONS`]); more than one spill to files in a new
    /// directory in the run's scratch directory.
    pub fn new(n: usize, scratch: &Scratch, name: &str) -> PolarsResult<Self> {
        let n = n.clamp(1, MAX_PARTITIONS);
        let (dir, stores) = if n == 1 {
            (None, vec![Store::Memory(Vec::new())])
        } else {
            let dir = tempfile::Builder::new()
                .prefix(&format!("{name}-"))
                .tempdir_in(scratch.path())?;
            let stores = (0..n)
                .map(|i| Store::File(dir.path().join(format!("{i}.arrow")), None))
                .collect();
            (Some(dir), stores)
        };
        Ok(Partitions {
            buffers: (0..n).map(|_| Vec::new()).collect(),
            stores,
            _dir: dir,
        })
    }

    /// How many partitions.
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    /// Whether there are none (never: there is always at least one).
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The partition for a hash.
    pub fn of(&self, hash: u64) -> usize {
        (hash % self.stores.len() as u64) as usize
    }

    /// Adds a row to partition `part`.
    pub fn push(&mut self, part: usize, row: R) -> PolarsResult<()> {
        self.buffers[part].push(row);
        if self.buffers[part].len() >= BUFFER_ROWS {
            let rows = std::mem::take(&mut self.buffers[part]);
            self.push_frame(part, R::frame(&rows)?)?;
        }
        Ok(())
    }

    /// Adds a whole frame (with `R`'s schema) to partition `part`.
    pub fn push_frame(&mut self, part: usize, mut df: DataFrame) -> PolarsResult<()> {
        if df.height() == 0 {
            return Ok(());
        }
        match &mut self.stores[part] {
            Store::Memory(frames) => frames.push(df),
            Store::File(path, writer) => {
                if writer.is_none() {
                    let file = BufWriter::with_capacity(256 << 10, File::create(&*path)?);
                    let fields = default_ipc_fields(
                        df.schema().to_arrow(CompatLevel::newest()).iter_values(),
                    );
                    *writer = Some(Box::new(IpcWriter::new(file).batched(df.schema(), fields)?));
                }
                df.rechunk_mut();
                writer.as_mut().expect("just opened").write_batch(&df)?;
            }
        }
        Ok(())
    }

    /// Flushes every buffer; the partitions can then be read one by one.
    pub fn finish(mut self) -> PolarsResult<Finished> {
        for part in 0..self.stores.len() {
            let rows = std::mem::take(&mut self.buffers[part]);
            if !rows.is_empty() {
                self.push_frame(part, R::frame(&rows)?)?;
            }
        }
        let empty = R::frame(&[])?;
        let mut parts = Vec::new();
        for store in self.stores {
            parts.push(match store {
                Store::Memory(frames) => Part::Memory(frames),
                Store::File(path, Some(mut w)) => {
                    w.finish()?;
                    Part::File(path)
                }
                Store::File(_, None) => Part::Memory(Vec::new()),
            });
        }
        Ok(Finished {
            parts,
            empty,
            _dir: self._dir,
        })
    }
}

enum Part {
    Memory(Vec<DataFrame>),
    File(PathBuf),
}

/// Filled partitions.
pub struct Finished {
    parts: Vec<Part>,
    empty: DataFrame,
    _dir: Option<tempfile::TempDir>,
}

impl Finished {
    /// How many partitions.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Takes partition `i` out (as one frame; its file is removed), leaving it empty.
    pub fn take(&mut self, i: usize) -> PolarsResult<DataFrame> {
        match std::mem::replace(&mut self.parts[i], Part::Memory(Vec::new())) {
            Part::Memory(frames) if frames.is_empty() => Ok(self.empty.clone()),
            Part::Memory(frames) => {
                let mut it = frames.into_iter();
                let mut df = it.next().expect("not empty");
                for f in it {
                    df.vstack_mut_owned(f)?;
                }
                Ok(df)
            }
            Part::File(path) => {
                let df = IpcReader::new(File::open(&path)?).finish()?;
                let _ = std::fs::remove_file(&path);
                Ok(df)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_scratch_directories_are_removed_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        // A dead run's directory: a lock file nobody holds, and spill files.
        let dead = tmp.path().join("geodns-mapgen-dead");
        std::fs::create_dir_all(dead.join("reports-x")).unwrap();
        std::fs::write(dead.join(LOCK_FILE), b"").unwrap();
        std::fs::write(dead.join("reports-x/0.arrow"), vec![0u8; 1000]).unwrap();
        // Not ours: no lock file.
        let other = tmp.path().join("geodns-mapgen-other");
        std::fs::create_dir_all(&other).unwrap();
        let (live, freed) = Scratch::new(tmp.path()).unwrap();
        assert_eq!(freed, 1000);
        assert!(!dead.exists() && other.exists());
        // A second run beside a live one leaves it alone.
        let (second, freed) = Scratch::new(tmp.path()).unwrap();
        assert_eq!(freed, 0);
        assert!(live.path().exists());
        let (p1, p2) = (live.path().to_owned(), second.path().to_owned());
        drop((live, second));
        assert!(!p1.exists() && !p2.exists());
    }
}
