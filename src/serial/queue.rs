//! The holder's bytes waiting for the serial line, sans-IO: a first-in,
//! first-out queue of whole messages, bounded in bytes. A message that does
//! not fit is refused whole (half a command is worse than none); the line
//! takes the oldest bytes first, as many at a time as it can.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

use super::MAX_CHUNK;

/// How much line time one holder may have waiting. The device's own output
/// never waits behind these bytes (the port's thread reads it between any
/// two writes), so this bounds the holder's own latency and memory: a `STOP`
/// typed after a flood reaches the device within about a second (plus what
/// the kernel's tty buffer holds), not after the 23 s that 64 messages of
/// 4 KiB take at 115200 baud. Shorter would refuse bursts a device takes
/// happily; longer lets a flood's tail outlive what its sender meant.
pub const QUEUE_TIME: Duration = Duration::from_secs(1);

/// A message refused because the queue had no room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "serial queue full ({queued} of {limit} bytes wait for the line); a write of {bytes} bytes was dropped"
)]
pub struct QueueFull {
    /// The refused message's size.
    pub bytes: usize,
    /// What was waiting then.
    pub queued: usize,
    pub limit: usize,
}

#[derive(Debug)]
pub struct WriteQueue {
    messages: VecDeque<Vec<u8>>,
    /// Bytes of the oldest message already written.
    written: usize,
    /// Bytes not written yet, in all.
    queued: usize,
    limit: usize,
}

impl WriteQueue {
    /// A queue holding at most `limit` bytes (at least one whole message).
    pub fn new(limit: usize) -> Self {
        WriteQueue {
            messages: VecDeque::new(),
            written: 0,
            queued: 0,
            limit: limit.max(MAX_CHUNK),
        }
    }

    /// A queue holding about [`QUEUE_TIME`] of a line at `baud`.
    pub fn for_baud(baud: u32) -> Self {
        Self::new(limit_for(baud))
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes not written yet.
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues `bytes` behind what waits, or refuses them whole if they do
    /// not fit (an empty message is taken and forgotten).
    pub fn push(&mut self, bytes: Vec<u8>) -> Result<(), QueueFull> {
        if self.queued + bytes.len() > self.limit {
            return Err(QueueFull {
                bytes: bytes.len(),
                queued: self.queued,
                limit: self.limit,
            });
        }
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.messages.push_back(bytes);
        }
        Ok(())
    }

    /// The oldest bytes not written yet (the rest of one message); empty
    /// when nothing waits.
    pub fn front(&self) -> &[u8] {
        match self.messages.front() {
            Some(m) => &m[self.written..],
            None => &[],
        }
    }

    /// The line took `n` of the oldest bytes.
    pub fn consume(&mut self, n: usize) {
        let mut n = n.min(self.queued);
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.messages.front() else {
                break;
            };
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.messages.pop_front();
            self.written = 0;
        }
    }

    /// Forgets everything waiting (the device went away meanwhile).
    pub fn clear(&mut self) {
        self.messages.clear();
        self.written = 0;
        self.queued = 0;
    }
}

/// The bytes a line at `baud` sends in [`QUEUE_TIME`] (ten bits a byte:
/// start, eight data, stop), but at least one whole message.
pub fn limit_for(baud: u32) -> usize {
    let per_second = baud as usize / 10;
    let budget = per_second * QUEUE_TIME.as_millis() as usize / 1000;
    budget.max(MAX_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_a_second_of_the_line_but_at_least_one_message() {
        assert_eq!(limit_for(115_200), 11_520);
        assert_eq!(limit_for(1_000_000), 100_000);
        assert_eq!(limit_for(9600), MAX_CHUNK, "a whole message always fits");
        assert_eq!(WriteQueue::for_baud(115_200).limit(), 11_520);
        assert_eq!(WriteQueue::new(10).limit(), MAX_CHUNK);
    }

    #[test]
    fn bytes_are_bounded_and_a_message_that_does_not_fit_is_refused_whole() {
        let mut q = WriteQueue::new(MAX_CHUNK);
        assert!(q.is_empty());
        q.push(vec![1; 3000]).unwrap();
        q.push(vec![2; 1000]).unwrap();
        let full = q.push(vec![3; 200]).unwrap_err();
        assert_eq!(
            full,
            QueueFull {
                bytes: 200,
                queued: 4000,
                limit: MAX_CHUNK
            }
        );
        assert!(full.to_string().contains("200 bytes was dropped"), "{full}");
        assert_eq!(q.queued(), 4000, "a refusal changes nothing");
        q.push(vec![4; 96]).unwrap();
        assert_eq!(q.queued(), MAX_CHUNK, "a smaller one still fits");
        assert!(q.push(vec![5]).is_err());
    }

    #[test]
    fn the_line_takes_the_oldest_bytes_first_and_room_comes_back_as_it_does() {
        let mut q = WriteQueue::new(MAX_CHUNK);
        q.push(b"FWD 10\n".to_vec()).unwrap();
        q.push(b"STOP\n".to_vec()).unwrap();
        assert_eq!(q.front(), b"FWD 10\n");
        q.consume(4);
        assert_eq!(q.front(), b"10\n", "a partial write leaves the rest first");
        assert_eq!(q.queued(), 8);
        q.consume(3);
        assert_eq!(q.front(), b"STOP\n");
        q.consume(5);
        assert!(q.is_empty());
        assert_eq!(q.front(), b"");
        q.consume(5); // nothing to take: no harm
        assert_eq!(q.queued(), 0);

        q.push(vec![7; MAX_CHUNK]).unwrap();
        assert!(q.push(vec![8; 10]).is_err());
        q.consume(10);
        q.push(vec![8; 10]).unwrap();
        assert_eq!(q.queued(), MAX_CHUNK);
    }

    #[test]
    fn empty_messages_are_not_kept_and_clear_forgets_everything() {
        let mut q = WriteQueue::new(MAX_CHUNK);
        q.push(Vec::new()).unwrap();
        assert!(q.is_empty());
        assert_eq!(q.front(), b"");
        q.push(b"PAN 5\n".to_vec()).unwrap();
        q.consume(2);
        q.clear();
        assert!(q.is_empty());
        q.push(b"TILT 1\n".to_vec()).unwrap();
        assert_eq!(q.front(), b"TILT 1\n", "no partial write survives a clear");
    }
}
