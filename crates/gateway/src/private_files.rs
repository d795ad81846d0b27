//! Files only their owner reads: the database (and SQLite's WAL and shared-memory files), the
//! settlement journal, the event log and every other file the process creates hold stored
//! conversations, captures and key hashes, so they are created 0600 (the process's umask is
//! 0077) and an existing one found open to others at startup is narrowed to 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Makes every file and directory this process creates from now on owner-only.
pub fn owner_only_from_now() {
    // SAFETY: umask only sets the process's file-mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// The files a gateway with this database, journal and event log writes.
pub fn gateway_files(
    database_url: &str,
    journal: Option<&Path>,
    event_log: Option<&Path>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(file) = crate::store::ledger::journal::sqlite_file(database_url) {
        for suffix in ["", "-wal", "-shm"] {
            out.push(PathBuf::from(format!("{file}{suffix}")));
        }
    }
    out.extend(journal.map(Path::to_path_buf));
    out.extend(event_log.map(Path::to_path_buf));
    out
}

/// Narrows each of `paths` that exists and is open to group or others to 0600; says so.
pub fn narrow(paths: &[PathBuf]) {
    for path in paths {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                was = format!("{mode:o}"),
                "a data file was readable by other users; it is now 0600"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "a data file is readable by other users and could not be narrowed"
            ),
        }
    }
}
