//! The serial bridge: a device on a serial line (a pan/tilt head, a robot's
//! controller) driven from viewers' `serial` data channels.
//!
//! [`floor`] is who may write, sans-IO (the data-channel protocol holds it);
//! [`queue`] is the holder's bytes waiting for the line, bounded in bytes,
//! sans-IO; [`outbox`] shares that queue between the rtc task (which only
//! pushes) and [`port`], the thread that owns the device, opens it again
//! every 2 s while it is missing, and moves bytes both ways, reading the
//! device between any two writes.

pub mod floor;
pub mod outbox;
pub mod port;
pub mod queue;

use serde::Serialize;

/// The bridge as viewers see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialState {
    /// No serial device configured.
    #[default]
    Off,
    /// Configured but missing, vanished or busy: retried every 2 s.
    Absent,
    /// Bridged.
    Open,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerialView {
    pub state: SerialState,
    pub path: Option<String>,
    pub baud: u32,
    /// Why it is absent.
    pub problem: Option<String>,
}

/// The largest message on a `serial` channel, in bytes.
pub const MAX_CHUNK: usize = 4096;
