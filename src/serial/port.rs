//! The serial port's thread: opens the device, moves bytes both ways, and
//! when it is missing, vanishes or is busy says so (a log line, a status
//! the page shows) and tries again every [`RETRY`]. Nothing here can stop
//! the video: the rtc task only ever `try_send`s to it.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::{MAX_CHUNK, SerialState, SerialView};
use crate::config::SerialConfig;

/// How often a missing device is looked for.
pub const RETRY: Duration = Duration::from_secs(2);
/// The longest a read waits: how late a write from a viewer may go out.
const READ_WAIT: Duration = Duration::from_millis(20);
/// A device that takes none of a viewer's bytes for this long has failed
/// (a tty only takes more once its output buffer drains: at 9600 baud 4 KiB
/// take 4 s).
const WRITE_STALL: Duration = Duration::from_secs(10);

pub struct SerialBridge {
    pub config: SerialConfig,
    /// Open, absent (and why).
    pub status: watch::Sender<SerialView>,
    /// Bytes from the device, for every viewer (a full road drops them).
    pub received: mpsc::Sender<Vec<u8>>,
    /// Bytes viewers wrote, for the device.
    pub writes: Receiver<Vec<u8>>,
    pub stop: Arc<AtomicBool>,
}

impl SerialBridge {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("serial".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let path = self.config.path.display().to_string();
        let mut last_problem = String::new();
        while !self.stop.load(Ordering::Relaxed) {
            let problem = match open(&self.config.path, self.config.baud) {
                Ok(port) => {
                    tracing::info!("serial: {path} open at {} baud", self.config.baud);
                    while self.writes.try_recv().is_ok() {} // asked while it was away
                    self.tell(SerialState::Open, None);
                    let why = self.pump(port);
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    why
                }
                Err(e) => e,
            };
            if problem != last_problem {
                tracing::warn!("serial: {path}: {problem}; trying again every 2 s");
                last_problem = problem.clone();
            }
            self.tell(SerialState::Absent, Some(problem));
            self.wait(RETRY);
        }
    }

    fn tell(&self, state: SerialState, problem: Option<String>) {
        let view = SerialView {
            state,
            path: Some(self.config.path.display().to_string()),
            baud: self.config.baud,
            problem,
        };
        self.status.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    /// Moves bytes until the device fails; what went wrong.
    fn pump(&self, mut port: serialport::TTYPort) -> String {
        let mut buf = vec![0u8; MAX_CHUNK];
        while !self.stop.load(Ordering::Relaxed) {
            while let Ok(bytes) = self.writes.try_recv() {
                if let Err(e) = self.write_out(&mut port, &bytes) {
                    return e;
                }
            }
            match port.read(&mut buf) {
                Ok(0) => return "the device closed".into(),
                Ok(n) => {
                    // A viewer side that cannot keep up loses bytes, not video.
                    let _ = self.received.try_send(buf[..n].to_vec());
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return format!("reading: {e}"),
            }
        }
        "stopping".into()
    }

    /// All of `bytes` to the device. A write that times out (the tty's
    /// buffer is full and drains at the line's speed) is tried again; only
    /// a real error, or no progress for [`WRITE_STALL`], fails the device.
    fn write_out(&self, port: &mut serialport::TTYPort, mut bytes: &[u8]) -> Result<(), String> {
        let mut progress = Instant::now();
        while !bytes.is_empty() && !self.stop.load(Ordering::Relaxed) {
            match port.write(bytes) {
                Ok(0) => return Err("writing: the device takes no bytes".into()),
                Ok(n) => {
                    bytes = &bytes[n..];
                    progress = Instant::now();
                }
                Err(e) if is_wait(&e) => {
                    if progress.elapsed() >= WRITE_STALL {
                        return Err(format!(
                            "writing: no byte taken for {} s",
                            WRITE_STALL.as_secs()
                        ));
                    }
                }
                Err(e) => return Err(format!("writing: {e}")),
            }
        }
        Ok(())
    }

    fn wait(&self, total: Duration) {
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < total && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(step);
            waited += step;
        }
    }
}

/// A write that only has to wait for the line.
fn is_wait(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), TimedOut | WouldBlock | Interrupted)
}

fn open(path: &Path, baud: u32) -> Result<serialport::TTYPort, String> {
    let name = path.to_string_lossy();
    serialport::new(name, baud)
        .timeout(READ_WAIT)
        .open_native()
        .map_err(|e| match e.kind {
            serialport::ErrorKind::NoDevice => format!("no such device ({e})"),
            _ => e.to_string(),
        })
}
