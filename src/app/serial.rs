//! The serial bridge's start: the port's thread, and the roads between it
//! and the rtc task.

use super::*;

/// The serial bridge's thread, if one is configured, and the rtc task's
/// road to it (whose senders are dropped at once without one).
pub(super) struct Serial {
    pub(super) road: SerialRoad,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

/// Serial chunks from the device waiting for the rtc task (at most 4 KiB
/// each). The holder's bytes the other way wait in an [`Outbox`] bounded
/// in bytes by the line's speed (`serial::queue`).
pub(super) const SERIAL_QUEUE: usize = 64;

/// At most one log line about a viewer's dropped serial writes this often.
pub(super) const SERIAL_DROPS_LOG: Duration = Duration::from_secs(10);

pub(super) fn start_serial(config: &Config, stop: Arc<AtomicBool>) -> anyhow::Result<Serial> {
    let (status_tx, status_rx) = watch::channel(SerialView::default());
    let (received_tx, received_rx) = mpsc::channel(SERIAL_QUEUE);
    let limit = config
        .serial
        .as_ref()
        .map_or(0, |s| queue::limit_for(s.baud));
    let writes = Outbox::new(limit).context("making the serial bridge's queue")?;
    let road = SerialRoad {
        status: status_rx,
        received: received_rx,
        writes: writes.clone(),
        drops_log: Throttle::new(SERIAL_DROPS_LOG),
    };
    let Some(serial) = config.serial.clone() else {
        return Ok(Serial { road, thread: None });
    };
    let thread = SerialBridge {
        config: serial,
        status: status_tx,
        received: received_tx,
        writes,
        stop,
    }
    .spawn()
    .context("starting the serial thread")?;
    Ok(Serial {
        road,
        thread: Some(thread),
    })
}
