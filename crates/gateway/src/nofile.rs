//! Raises this process's open-file limit (RLIMIT_NOFILE) from its soft value to the hard one, so a
//! server holding thousands of streams is not cut off at the usual 1,024. Called once at startup by
//! `serve` (the bench crate keeps its own copy, `crates/bench/src/nofile.rs`, for `bench`).

/// Raises the soft RLIMIT_NOFILE to the hard limit; logs at debug level what it did. Returns the
/// soft limit in force afterwards (`None` if it could not be read).
pub(crate) fn raise_nofile_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::debug!("RLIMIT_NOFILE: cannot read the limit");
        return None;
    }
    let before = lim.rlim_cur;
    // Linux refuses an unlimited open-file count; its usual ceiling (fs.nr_open) is 2^20.
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        lim.rlim_max
    };
    if before >= target {
        tracing::debug!("RLIMIT_NOFILE: soft limit {before} is already the hard limit");
        return Some(before);
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::debug!("RLIMIT_NOFILE: could not raise the soft limit {before} to {target}");
        return Some(before);
    }
    tracing::debug!("RLIMIT_NOFILE: raised the soft limit from {before} to {target}");
    Some(target)
}
