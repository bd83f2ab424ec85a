//! The state file: the registry saved as a Eureka applications document (JSON), so it can be read
//! with any Eureka tool and resumed on the next start.
//!
//! Each instance's `leaseInfo.lastRenewalTimestamp` is its lease and `overriddenStatus` its override,
//! so the document alone restores both. Writing is atomic: a temporary file in the same directory
//! (a name of its own per write, created exclusively, so two writes never share one), flushed to
//! disk, renamed over the old one, then the directory flushed too, so a crash leaves the old or the
//! new state, never half of one, and the rename itself survives a power cut.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use crate::codec::{self, DecodeError, Format, View};
use crate::model::Applications;

/// A state file that could not be read or written. Each names the file.
#[derive(Debug, Error)]
pub enum StateFileError {
    /// The file exists but could not be read.
    #[error("cannot read the registry state file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a Eureka applications document.
    #[error("the registry state file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DecodeError,
    },
    /// The file could not be written.
    #[error("cannot write the registry state file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Reads a saved registry; `Ok(None)` when the file does not exist yet (a first start).
///
/// # Errors
/// [`StateFileError::Read`] or [`StateFileError::Corrupt`].
pub(crate) fn load(path: &Path) -> Result<Option<Applications>, StateFileError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateFileError::Read { path: path.to_owned(), source }),
    };
    codec::decode_applications(&bytes, Format::Json).map(Some).map_err(|source| StateFileError::Corrupt { path: path.to_owned(), source })
}

/// The bytes [`store`] writes.
pub(crate) fn encode(applications: &Applications) -> Vec<u8> {
    codec::encode_applications(applications, Format::Json, View::Full)
}

/// Replaces the file with `bytes` atomically (blocking I/O: run it off the async threads). Safe to
/// call from several threads at once: the last rename wins, and each rename carries a whole file.
///
/// # Errors
/// [`StateFileError::Write`].
pub(crate) fn store(path: &Path, bytes: &[u8]) -> Result<(), StateFileError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let error = |source| StateFileError::Write { path: path.to_owned(), source };
    let name = path.file_name().ok_or_else(|| error(io::Error::new(io::ErrorKind::InvalidInput, "the path names no file")))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".tmp-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let temporary = path.with_file_name(temporary_name);
    let written = (|| {
        // The folder may be a state directory nothing has written to yet.
        if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty() && !folder.exists()) {
            create_private_folder(folder)?;
        }
        // create_new: a leftover of a crashed process with the same pid is an error, not shared.
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(source) = written {
        // Best effort: the temporary file is garbage either way.
        let _ = std::fs::remove_file(&temporary);
        return Err(error(source));
    }
    sync_directory(path).map_err(error)
}

/// Creates `folder` and its parents, readable by the owner only where modes exist (the registry's
/// state names every instance and its metadata).
fn create_private_folder(folder: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

/// Flushes the directory holding `path`, so the rename that put the new file there is on disk.
#[cfg(unix)]
fn sync_directory(path: &Path) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}

/// Windows cannot open a directory as a file; its renames are flushed with the file system's journal.
#[cfg(not(unix))]
fn sync_directory(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Application, Instance, Status};
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new() -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!("wsgate-registry-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = TempDir::new();
        let path = dir.0.join("registry.json");
        assert!(load(&path).unwrap().is_none());
        let mut instance = Instance::new("demo", "1", "h", "127.0.0.1");
        instance.overridden_status = Status::OutOfService;
        instance.lease_info.last_renewal_timestamp = 42;
        let apps = Applications { versions_delta: 7, apps_hashcode: "UP_1_".into(), applications: vec![Application { name: "DEMO".into(), instances: vec![Arc::new(instance)] }] };
        store(&path, &encode(&apps)).unwrap();
        store(&path, &encode(&apps)).unwrap();
        assert_eq!(load(&path).unwrap(), Some(apps));
        let leftovers: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("registry.json")], "no temporary file is left behind");
    }

    #[test]
    fn a_missing_folder_is_made_private() {
        let dir = TempDir::new();
        let path = dir.0.join("state").join("gw").join("registry.json");
        store(&path, &encode(&Applications::default())).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Applications::default()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(dir.0.join("state/gw")).unwrap().permissions().mode() & 0o777, 0o700);
        }
    }

    #[test]
    fn a_corrupt_file_is_a_typed_error_naming_it() {
        let dir = TempDir::new();
        let path = dir.0.join("registry.json");
        for garbage in [&b"{\"applications\":{"[..], b"", b"<applications>", b"{\"other\":1}"] {
            std::fs::write(&path, garbage).unwrap();
            let error = load(&path).unwrap_err();
            assert!(matches!(error, StateFileError::Corrupt { .. }), "{error}");
            assert!(error.to_string().contains("registry.json"), "{error}");
        }
    }

    #[test]
    fn concurrent_stores_never_mix_or_fail() {
        let dir = TempDir::new();
        let path = dir.0.join("registry.json");
        // Large enough that one write is many system calls, so writes overlap.
        let payloads: Vec<Vec<u8>> = (b'a'..=b'h').map(|byte| vec![byte; 256 * 1024]).collect();
        std::thread::scope(|scope| {
            for payload in &payloads {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..20 {
                        store(path, payload).unwrap();
                    }
                });
            }
        });
        let saved = std::fs::read(&path).unwrap();
        assert!(payloads.contains(&saved), "the file is one whole write ({} bytes)", saved.len());
        let leftovers: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("registry.json")]);
    }

    #[test]
    fn an_unwritable_place_is_a_write_error() {
        let dir = TempDir::new();
        // Under a file, where no folder can be.
        std::fs::write(dir.0.join("a-file"), b"").unwrap();
        let error = store(&dir.0.join("a-file").join("registry.json"), b"{}").unwrap_err();
        assert!(matches!(error, StateFileError::Write { .. }), "{error}");
    }
}
