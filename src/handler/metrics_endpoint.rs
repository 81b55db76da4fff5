//! The `rwsgi-metrics` handler: `<Location /server-metrics> SetHandler rwsgi-metrics
//! </Location>` answers with every daemon group's metrics in the Prometheus text format,
//! read by this Apache child from the generation's shared metrics table (no daemon thread,
//! no Python: it answers while every daemon thread is busy). Who may read it is up to the
//! ordinary `Require` rules of its `<Location>`.

use std::ffi::CStr;
use std::sync::Mutex;

use crate::apache::request::Request;
use crate::ffi;
use crate::metrics::openmetrics::{self, GroupView};
use crate::metrics::table::MetricsTable;

/// The handler name to give `SetHandler`.
pub const HANDLER_NAME: &CStr = c"rwsgi-metrics";

/// This generation's table and its groups' names, in table order; set by the Apache parent
/// before it forks the children that read it.
static PUBLISHED: Mutex<Option<(MetricsTable, Vec<String>)>> = Mutex::new(None);

/// Makes `table` (with `groups` named in order) what the endpoint shows.
pub fn publish(table: Option<MetricsTable>, groups: Vec<String>) {
    let mut published = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
    *published = table.map(|t| (t, groups));
}

/// A process' resident set size (None if it cannot be read, e.g. under hidepid).
fn resident_bytes(pid: u32) -> Option<u64> {
    crate::util::resident_set_bytes(Some(pid))
}

/// The content handler; DECLINED for other handlers.
pub fn handle(r: &mut Request<'_>) -> i32 {
    if r.handler() != Some(HANDLER_NAME.to_bytes()) {
        return ffi::DECLINED;
    }
    if r.method() != b"GET" && r.method() != b"HEAD" {
        return ffi::HTTP_METHOD_NOT_ALLOWED;
    }
    let text = {
        let published = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
        match published.as_ref() {
            Some((table, names)) => {
                let snapshots: Vec<_> = (0..table.group_count().min(names.len()))
                    .map(|g| table.snapshot(g))
                    .collect();
                let views: Vec<GroupView<'_>> = names
                    .iter()
                    .zip(&snapshots)
                    .map(|(name, snapshot)| GroupView {
                        name,
                        snapshot,
                        resident_bytes: &resident_bytes,
                    })
                    .collect();
                openmetrics::render(&views)
            }
            None => openmetrics::render(&[]),
        }
    };
    r.set_status(200, b"");
    r.add_header_out(b"Content-Type", openmetrics::CONTENT_TYPE.as_bytes());
    r.add_header_out(b"Cache-Control", b"no-store");
    r.add_header_out(b"Content-Length", text.len().to_string().as_bytes());
    if r.header_only() {
        return ffi::OK;
    }
    if r.write(text.as_bytes()).is_err() {
        r.abort_connection();
    }
    ffi::OK
}
