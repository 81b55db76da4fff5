//! L2: pure Rust metrics shared by the daemons and the handler: the table the daemons
//! write into shared memory (`table`) and its OpenMetrics text (`openmetrics`), served by
//! the handler's metrics endpoint; and the datagrams of the telemetry stream
//! (`telemetry_wire`) the daemons send to a `mod_wsgi-telemetry` ingester.

pub mod openmetrics;
pub mod table;
pub mod telemetry_wire;
