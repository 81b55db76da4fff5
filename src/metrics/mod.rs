//! L2: pure Rust metrics shared by the daemons and the handler: the table the daemons
//! write into shared memory (`table`) and its OpenMetrics text (`openmetrics`), served by
//! the handler's metrics endpoint.

pub mod openmetrics;
pub mod table;
