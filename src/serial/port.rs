//! The serial port's thread: opens the device, moves bytes both ways, and
//! when it is missing, vanishes or is busy says so (a log line, a status
//! the page shows) and tries again every [`RETRY`]. Nothing here can stop
//! the video: the rtc task only ever pushes to the [`Outbox`] (refused at
//! once when full), and this thread only `try_send`s back.
//!
//! Reading the device never waits behind writing it: the port is
//! non-blocking, and one `poll` waits for whichever comes first (bytes from
//! the device, room for the holder's bytes, the outbox's doorbell); each
//! turn reads what arrived, then writes what the line takes now. A slow
//! line holds up only the holder's own bytes, at most the outbox's bound.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{mpsc, watch};

use super::outbox::Outbox;
use super::{MAX_CHUNK, SerialState, SerialView};
use crate::config::SerialConfig;

/// How often a missing device is looked for.
pub const RETRY: Duration = Duration::from_secs(2);
/// The longest one wait lasts: how soon a stop is noticed (bytes either
/// way wake the thread at once).
const TICK: Duration = Duration::from_millis(50);
/// A device that takes none of a viewer's bytes for this long has failed
/// (a tty only takes more once its output buffer drains: at 9600 baud 4 KiB
/// take 4 s).
const WRITE_STALL: Duration = Duration::from_secs(10);

/// Why the device could not be opened, or stopped working.
#[derive(Debug, Error)]
pub enum PortError {
    #[error("no such device ({0})")]
    NoDevice(serialport::Error),
    #[error("{0}")]
    Open(serialport::Error),
    #[error("making it non-blocking: {0}")]
    Setup(io::Error),
    #[error("waiting for it: {0}")]
    Wait(io::Error),
    #[error("the device hung up (unplugged?)")]
    HungUp,
    #[error("the device closed")]
    Closed,
    #[error("reading: {0}")]
    Read(io::Error),
    #[error("writing: {0}")]
    Write(io::Error),
    #[error("writing: the device takes no bytes")]
    TakesNothing,
    #[error("writing: no byte taken for {secs} s", secs = WRITE_STALL.as_secs())]
    Stalled,
}

pub struct SerialBridge {
    pub config: SerialConfig,
    /// Open, absent (and why).
    pub status: watch::Sender<SerialView>,
    /// Bytes from the device, for every viewer (a full road drops them).
    pub received: mpsc::Sender<Vec<u8>>,
    /// Bytes the floor's holder wrote, for the device.
    pub writes: Outbox,
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
        while !self.stopping() {
            let problem = match open(&self.config.path, self.config.baud) {
                Ok(mut port) => {
                    tracing::info!("serial: {path} open at {} baud", self.config.baud);
                    self.writes.clear(); // asked while it was away
                    self.tell(SerialState::Open, None);
                    match self.pump(&mut port) {
                        Err(e) if !self.stopping() => e,
                        _ => return,
                    }
                }
                Err(e) => e,
            }
            .to_string();
            if problem != last_problem {
                tracing::warn!("serial: {path}: {problem}; trying again every 2 s");
                last_problem = problem.clone();
            }
            self.tell(SerialState::Absent, Some(problem));
            self.wait(RETRY);
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
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

    /// Moves bytes both ways until the device fails (`Ok` once stopping):
    /// each turn waits for the first of the device's bytes, room on the
    /// line (only while bytes wait) and the doorbell, then reads, then
    /// writes once, so the device is read between any two writes.
    fn pump(&self, port: &mut serialport::TTYPort) -> Result<(), PortError> {
        let mut buf = vec![0u8; MAX_CHUNK];
        let mut chunk = Vec::with_capacity(MAX_CHUNK);
        let mut progress = Instant::now();
        while !self.stopping() {
            let pending = !self.writes.is_empty();
            if !pending {
                progress = Instant::now();
            } else if progress.elapsed() >= WRITE_STALL {
                return Err(PortError::Stalled);
            }
            let ready = poll_ready(port.as_raw_fd(), self.writes.bell_fd(), pending, TICK)
                .map_err(PortError::Wait)?;
            if ready.bell {
                self.writes.hush();
            }
            if ready.hangup {
                return Err(PortError::HungUp);
            }
            if ready.read {
                self.read_in(port, &mut buf)?;
            }
            if ready.write && self.write_out(port, &mut chunk)? {
                progress = Instant::now();
            }
        }
        Ok(())
    }

    /// What the device sent, to every viewer.
    fn read_in(&self, port: &mut serialport::TTYPort, buf: &mut [u8]) -> Result<(), PortError> {
        match port.read(buf) {
            Ok(0) => Err(PortError::Closed),
            Ok(n) => {
                // A viewer side that cannot keep up loses bytes, not video.
                let _ = self.received.try_send(buf[..n].to_vec());
                Ok(())
            }
            Err(e) if is_wait(&e) => Ok(()),
            Err(e) => Err(PortError::Read(e)),
        }
    }

    /// One write of the oldest waiting bytes, as many as the line takes now
    /// (the port never blocks); whether it took any.
    fn write_out(
        &self,
        port: &mut serialport::TTYPort,
        chunk: &mut Vec<u8>,
    ) -> Result<bool, PortError> {
        self.writes.next(chunk);
        if chunk.is_empty() {
            return Ok(false);
        }
        match port.write(&chunk[..]) {
            Ok(0) => Err(PortError::TakesNothing),
            Ok(n) => {
                self.writes.written(n);
                Ok(true)
            }
            Err(e) if is_wait(&e) => Ok(false),
            Err(e) => Err(PortError::Write(e)),
        }
    }

    fn wait(&self, total: Duration) {
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < total && !self.stopping() {
            std::thread::sleep(step);
            waited += step;
        }
    }
}

/// What one `poll` found.
#[derive(Debug, Default)]
struct Ready {
    read: bool,
    write: bool,
    hangup: bool,
    bell: bool,
}

/// Waits up to `timeout` for the device to be readable (or writable, when
/// `want_write`), or the doorbell to ring. A signal ends the wait early
/// with nothing ready.
fn poll_ready(port: RawFd, bell: RawFd, want_write: bool, timeout: Duration) -> io::Result<Ready> {
    let mut events = libc::POLLIN;
    if want_write {
        events |= libc::POLLOUT;
    }
    let mut fds = [
        libc::pollfd {
            fd: port,
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: bell,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a live array of two initialised pollfds.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Ready::default());
        }
        return Err(e);
    }
    let got = fds[0].revents;
    Ok(Ready {
        read: got & libc::POLLIN != 0,
        write: got & libc::POLLOUT != 0,
        hangup: got & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        bell: fds[1].revents & libc::POLLIN != 0,
    })
}

/// A read or write that only has to wait for the line.
fn is_wait(e: &io::Error) -> bool {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), TimedOut | WouldBlock | Interrupted)
}

/// Opens the device, non-blocking: the thread's own `poll` does all the
/// waiting (the port's timeout is zero, so its read and write never wait
/// either).
fn open(path: &Path, baud: u32) -> Result<serialport::TTYPort, PortError> {
    let name = path.to_string_lossy();
    let port = serialport::new(name, baud)
        .timeout(Duration::ZERO)
        .open_native()
        .map_err(|e| match e.kind {
            serialport::ErrorKind::NoDevice => PortError::NoDevice(e),
            _ => PortError::Open(e),
        })?;
    set_nonblocking(port.as_raw_fd()).map_err(PortError::Setup)?;
    Ok(port)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the port owns, with plain integer flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
