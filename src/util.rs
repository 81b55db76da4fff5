//! Small process-wide helpers used by several layers (the daemons, the Python host, the
//! handler and the module's entry points), kept here so each has exactly one definition.

/// Microseconds since the Unix epoch (the clock of Apache's `r->request_time` and of
/// mod_wsgi's timestamps); 0 if the clock is before the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A process' resident set size in bytes, from `/proc/<pid>/statm` (resident pages × page
/// size); `None` = this process. None if it cannot be read (e.g. another's under hidepid).
pub fn resident_set_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/statm"),
        None => "/proc/self/statm".to_string(),
    };
    let statm = std::fs::read_to_string(path).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`); None for
/// any other payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_of_both_payload_types_and_none_else() {
        let text = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*text).as_deref(), Some("plain"));
        let n = 3;
        let formatted = std::panic::catch_unwind(|| panic!("n={n}")).unwrap_err();
        assert_eq!(panic_message(&*formatted).as_deref(), Some("n=3"));
        let other = std::panic::catch_unwind(|| std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(panic_message(&*other), None);
    }

    #[test]
    fn this_process_has_a_resident_set_and_a_clock() {
        assert!(resident_set_bytes(None).unwrap() > 0);
        assert_eq!(
            resident_set_bytes(Some(std::process::id())).is_some(),
            resident_set_bytes(None).is_some()
        );
        assert!(now_us() > 1_600_000_000_000_000);
    }
}
