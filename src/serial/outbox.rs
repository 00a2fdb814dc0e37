//! The road from the rtc task to the serial port's thread: a [`WriteQueue`]
//! both hold, and a doorbell that wakes the thread when bytes arrive (so a
//! write goes out at once and the queue drains as fast as the line takes
//! it). The rtc task only ever pushes: the lock is held for a copy, never
//! for IO, and a full queue refuses at once.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::queue::{QueueFull, WriteQueue};

/// Both ends of the doorbell: a byte written to `ring` makes `hear`
/// readable (both non-blocking).
#[derive(Debug)]
struct Bell {
    ring: UnixStream,
    hear: UnixStream,
}

#[derive(Debug, Clone)]
pub struct Outbox {
    queue: Arc<Mutex<WriteQueue>>,
    bell: Arc<Bell>,
}

impl Outbox {
    /// An empty outbox holding at most `limit` bytes (see
    /// [`super::queue::limit_for`]).
    pub fn new(limit: usize) -> io::Result<Outbox> {
        let (ring, hear) = UnixStream::pair()?;
        ring.set_nonblocking(true)?;
        hear.set_nonblocking(true)?;
        Ok(Outbox {
            queue: Arc::new(Mutex::new(WriteQueue::new(limit))),
            bell: Arc::new(Bell { ring, hear }),
        })
    }

    /// Queues a holder's bytes without waiting and wakes the thread; a full
    /// queue refuses them whole.
    pub fn push(&self, bytes: Vec<u8>) -> Result<(), QueueFull> {
        self.lock().push(bytes)?;
        // A bell whose buffer is full has rung already.
        let _ = (&self.bell.ring).write(&[1]);
        Ok(())
    }

    /// Copies the oldest waiting bytes into `out` (emptied first); `out`
    /// stays empty when nothing waits.
    pub fn next(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.lock().front());
    }

    /// The line took `n` of the bytes [`Outbox::next`] gave.
    pub fn written(&self, n: usize) {
        self.lock().consume(n);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets everything waiting.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// What to poll for the doorbell (readable once bytes were pushed).
    pub fn bell_fd(&self) -> RawFd {
        self.bell.hear.as_raw_fd()
    }

    /// Silences the doorbell: the thread heard it and looks at the queue
    /// next.
    pub fn hush(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.bell.hear).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// The queue, even if a thread panicked holding it (the bytes are
    /// still whole: every change is one call).
    fn lock(&self) -> MutexGuard<'_, WriteQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::MAX_CHUNK;

    fn rung(o: &Outbox) -> bool {
        let mut b = [0u8; 1];
        matches!((&o.bell.hear).read(&mut b), Ok(1))
    }

    #[test]
    fn a_push_rings_a_refusal_does_not_and_bytes_come_out_in_order() {
        let o = Outbox::new(MAX_CHUNK).unwrap();
        let thread_side = o.clone();
        assert!(!rung(&o));
        o.push(b"PAN 1\n".to_vec()).unwrap();
        assert!(rung(&thread_side), "the thread is woken");
        o.hush();
        assert!(!rung(&o));
        assert!(o.push(vec![0; MAX_CHUNK]).is_err());
        assert!(!rung(&o), "nothing queued, nothing to wake for");

        let mut chunk = Vec::new();
        thread_side.next(&mut chunk);
        assert_eq!(chunk, b"PAN 1\n");
        thread_side.written(4);
        thread_side.next(&mut chunk);
        assert_eq!(chunk, b"1\n");
        thread_side.written(2);
        assert!(o.is_empty());
        thread_side.next(&mut chunk);
        assert!(chunk.is_empty());
    }

    #[test]
    fn many_pushes_never_block_on_the_bell() {
        let o = Outbox::new(usize::MAX / 2).unwrap();
        for _ in 0..10_000 {
            o.push(vec![1]).unwrap(); // the bell's buffer fills long before
        }
        o.hush();
        assert!(!rung(&o));
        o.clear();
        assert!(o.is_empty());
    }
}
