//! The datagrams of mod_wsgi 6's telemetry stream, as its `mod_wsgi-telemetry` ingester
//! (1.1.0) decodes them: a 24-byte header (`WSGI`, version 1, kind, flags 0, pid, sequence
//! number, a time stamp in seconds since the epoch; little-endian), then type-length-value
//! fields until the end of the datagram. Field numbers and kinds are mod_wsgi's (its
//! `wsgi_telemetry.h`); times are seconds as `f64`, counts `u64`.

/// Datagram kinds.
pub mod kind {
    pub const REQUEST: u8 = 2;
    pub const SLOW_REQUEST: u8 = 4;
    pub const PROCESS_STARTED: u8 = 5;
    pub const PROCESS_STOPPING: u8 = 6;
    pub const PROCESS_STOPPED: u8 = 7;
    pub const GC_SNAPSHOT: u8 = 8;
    pub const GC_EVENT: u8 = 9;
}

/// Field numbers.
pub mod field {
    pub const MOD_WSGI_VERSION: u16 = 1;
    pub const PYTHON_VERSION: u16 = 2;
    pub const APACHE_VERSION: u16 = 3;
    pub const MPM_NAME: u16 = 4;
    pub const HOSTNAME: u16 = 5;
    pub const PROCESS_GROUP: u16 = 6;
    pub const PROCESS_PARENT_PID: u16 = 7;
    pub const SAMPLE_PERIOD: u16 = 10;
    pub const TELEMETRY_INTERVAL: u16 = 11;
    pub const SLOW_REQUESTS_THRESHOLD: u16 = 12;
    pub const REQUEST_COUNT: u16 = 20;
    pub const REQUEST_THROUGHPUT: u16 = 21;
    pub const CAPACITY_UTILIZATION: u16 = 22;
    pub const CPU_USER_UTILIZATION: u16 = 30;
    pub const CPU_SYSTEM_UTILIZATION: u16 = 31;
    pub const CPU_UTILIZATION: u16 = 32;
    pub const MEMORY_RSS: u16 = 40;
    pub const MEMORY_MAX_RSS: u16 = 41;
    pub const REQUEST_THREADS_MAXIMUM: u16 = 50;
    pub const REQUEST_THREADS_STARTED: u16 = 51;
    pub const REQUEST_THREADS_ACTIVE: u16 = 52;
    /// Means of the phases (server, queue, daemon, application, request, GIL wait, input
    /// read, output write); +10 is the minimum, +20 the maximum, +30 the histogram.
    pub const SERVER_TIME: u16 = 60;
    pub const QUEUE_TIME: u16 = 61;
    pub const DAEMON_TIME: u16 = 62;
    pub const APPLICATION_TIME: u16 = 63;
    pub const REQUEST_TIME: u16 = 64;
    pub const GIL_WAIT_TIME: u16 = 65;
    pub const INPUT_READ_TIME: u16 = 66;
    pub const OUTPUT_WRITE_TIME: u16 = 67;
    pub const MIN_OFFSET: u16 = 10;
    pub const MAX_OFFSET: u16 = 20;
    pub const BUCKETS_OFFSET: u16 = 30;
    pub const INPUT_BYTES_TOTAL: u16 = 100;
    pub const INPUT_READS_TOTAL: u16 = 101;
    pub const OUTPUT_BYTES_TOTAL: u16 = 102;
    pub const OUTPUT_WRITES_TOTAL: u16 = 103;
    pub const REQUEST_THREADS_COMPLETED: u16 = 110;
    pub const REQUEST_THREADS_BUSY_TIME: u16 = 111;
    pub const REQUEST_THREADS_CPU_TIME: u16 = 112;
    pub const REQUEST_THREADS_CURRENT_ELAPSED: u16 = 113;
    pub const REQUEST_THREADS_MAX_DURATION: u16 = 114;
    /// 1xx; 2xx..5xx follow.
    pub const STATUS_1XX_TOTAL: u16 = 120;
    pub const SHUTDOWN_REASON: u16 = 130;
    pub const PROCESS_UPTIME: u16 = 131;
    pub const LIFETIME_REQUEST_COUNT: u16 = 132;
    pub const ACTIVE_REQUESTS_AT_DECISION: u16 = 133;
    pub const ACTIVE_REQUESTS_AT_EXIT: u16 = 134;
    pub const GRACEFUL_DRAIN: u16 = 135;
    pub const SLOW_RECORD_STATE: u16 = 200;
    pub const SLOW_START_STAMP: u16 = 201;
    pub const SLOW_DURATION: u16 = 202;
    pub const SLOW_THREAD_ID: u16 = 203;
    pub const SLOW_LOG_ID: u16 = 204;
    pub const SLOW_SERVER_PID: u16 = 205;
    pub const SLOW_METHOD: u16 = 210;
    pub const SLOW_SCHEME: u16 = 211;
    pub const SLOW_HOSTNAME: u16 = 212;
    pub const SLOW_SCRIPT_NAME: u16 = 213;
    pub const SLOW_PATH_INFO: u16 = 214;
    pub const SLOW_PROTOCOL: u16 = 215;
    pub const SLOW_PEER_IP: u16 = 216;
    pub const SLOW_USER_AGENT: u16 = 217;
    pub const SLOW_SERVER_TIME: u16 = 220;
    pub const SLOW_QUEUE_TIME: u16 = 221;
    pub const SLOW_DAEMON_TIME: u16 = 222;
    pub const SLOW_APPLICATION_TIME: u16 = 223;
    pub const SLOW_GIL_WAIT_TIME: u16 = 224;
    pub const SLOW_GIL_WAIT_COUNT: u16 = 225;
    pub const SLOW_INPUT_BYTES: u16 = 230;
    pub const SLOW_INPUT_READS: u16 = 231;
    pub const SLOW_OUTPUT_BYTES: u16 = 232;
    pub const SLOW_OUTPUT_WRITES: u16 = 233;
    pub const SLOW_INPUT_READ_TIME: u16 = 234;
    pub const SLOW_OUTPUT_WRITE_TIME: u16 = 235;
    pub const SLOW_STATUS: u16 = 240;
    pub const SLOW_CPU_USER_TIME: u16 = 250;
    pub const SLOW_CPU_SYSTEM_TIME: u16 = 251;
    pub const SLOW_ACTIVE_AT_START: u16 = 260;
    pub const SLOW_ACTIVE_AT_COMPLETION: u16 = 261;
    /// GC snapshot: counts of generations 0..2; thresholds (+3), collections (+6),
    /// collected (+9) and uncollectable (+12) follow, each three wide.
    pub const GC_COUNT0: u16 = 300;
    pub const GC_THRESHOLD0: u16 = 303;
    pub const GC_COLLECTIONS0: u16 = 306;
    pub const GC_COLLECTED0: u16 = 309;
    pub const GC_UNCOLLECTABLE0: u16 = 312;
    pub const GC_IS_ENABLED: u16 = 315;
    pub const GC_FREEZE_COUNT: u16 = 316;
    pub const GC_DROPPED_EVENTS: u16 = 317;
    /// GC event: one collection's pause.
    pub const GC_EVENT_START_STAMP: u16 = 320;
    pub const GC_EVENT_DURATION: u16 = 321;
    pub const GC_EVENT_GENERATION: u16 = 322;
    pub const GC_EVENT_COLLECTED: u16 = 323;
    pub const GC_EVENT_UNCOLLECTABLE: u16 = 324;
}

const T_U64: u8 = 0x01;
const T_F64: u8 = 0x02;
const T_BYTES: u8 = 0x04;
const T_I32_ARRAY: u8 = 0x05;
const T_F64_ARRAY: u8 = 0x06;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 24;

/// One datagram being built. Strings and arrays longer than a `u16` length allows are cut.
#[derive(Debug, Clone)]
pub struct Datagram(Vec<u8>);

impl Datagram {
    /// A datagram of `kind` from process `pid`, number `seq` of its stream, stamped `stamp`
    /// (seconds since the epoch).
    pub fn new(kind: u8, pid: u32, seq: u32, stamp: f64) -> Datagram {
        let mut b = Vec::with_capacity(2048);
        b.extend_from_slice(b"WSGI");
        b.push(1);
        b.push(kind);
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&pid.to_le_bytes());
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&stamp.to_le_bytes());
        Datagram(b)
    }

    fn tag(&mut self, id: u16, ty: u8) {
        self.0.extend_from_slice(&id.to_le_bytes());
        self.0.push(ty);
    }

    pub fn u64(&mut self, id: u16, v: u64) -> &mut Self {
        self.tag(id, T_U64);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn f64(&mut self, id: u16, v: f64) -> &mut Self {
        self.tag(id, T_F64);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Bytes; an empty value is left out (as mod_wsgi does).
    pub fn bytes(&mut self, id: u16, v: &[u8]) -> &mut Self {
        if v.is_empty() {
            return self;
        }
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.tag(id, T_BYTES);
        self.0.extend_from_slice(&(v.len() as u16).to_le_bytes());
        self.0.extend_from_slice(v);
        self
    }

    /// Counts as an array of `i32` (saturated).
    pub fn i32_array(&mut self, id: u16, v: &[u64]) -> &mut Self {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.tag(id, T_I32_ARRAY);
        self.0.extend_from_slice(&(v.len() as u16).to_le_bytes());
        for x in v {
            let x = i32::try_from(*x).unwrap_or(i32::MAX);
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        self
    }

    pub fn f64_array(&mut self, id: u16, v: &[f64]) -> &mut Self {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.tag(id, T_F64_ARRAY);
        self.0.extend_from_slice(&(v.len() as u16).to_le_bytes());
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_fields_are_little_endian_tlv() {
        let mut d = Datagram::new(kind::REQUEST, 0x0102_0304, 7, 1.5);
        d.u64(field::REQUEST_COUNT, 3)
            .f64(field::SAMPLE_PERIOD, 0.25)
            .bytes(field::HOSTNAME, b"h")
            .bytes(field::MPM_NAME, b"")
            .i32_array(field::REQUEST_THREADS_COMPLETED, &[1, u64::MAX])
            .f64_array(field::REQUEST_THREADS_BUSY_TIME, &[2.0]);
        let b = d.as_bytes();
        assert_eq!(&b[..4], b"WSGI");
        assert_eq!(b[4..8], [1, kind::REQUEST, 0, 0]);
        assert_eq!(b[8..12], [4, 3, 2, 1]);
        assert_eq!(b[12..16], 7u32.to_le_bytes());
        assert_eq!(b[16..24], 1.5f64.to_le_bytes());
        let mut expect = vec![20, 0, T_U64];
        expect.extend_from_slice(&3u64.to_le_bytes());
        expect.extend_from_slice(&[10, 0, T_F64]);
        expect.extend_from_slice(&0.25f64.to_le_bytes());
        expect.extend_from_slice(&[5, 0, T_BYTES, 1, 0, b'h']);
        expect.extend_from_slice(&[110, 0, T_I32_ARRAY, 2, 0]);
        expect.extend_from_slice(&1i32.to_le_bytes());
        expect.extend_from_slice(&i32::MAX.to_le_bytes());
        expect.extend_from_slice(&[111, 0, T_F64_ARRAY, 1, 0]);
        expect.extend_from_slice(&2.0f64.to_le_bytes());
        assert_eq!(&b[HEADER_LEN..], &expect[..]);
    }
}
