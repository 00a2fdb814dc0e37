//! Whose password is checked next, sans-IO.
//!
//! A password check (Argon2) takes a core for tens of milliseconds, and
//! only a few run at once. A first-come queue let a flood of wrong logins
//! (600 from 150 addresses) keep the owner's right one waiting for 3.2 s.
//! Here each address has at most one login waiting, and the queue serves
//! the best standing first: a browser that has logged in before (its device
//! cookie), then an address with no failures, then the rest, fewest
//! failures first; first come, first served within a standing. The queue
//! is bounded: a newcomer of better standing takes the place of the worst
//! waiting login, which is told to come back; of worse, it is told itself.

use std::net::IpAddr;

/// How much a login is trusted before its password is checked: the order
/// of the variants is the order of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// From a browser that logged in before (device cookie).
    Known,
    /// From an address with no failures on record.
    Clean,
    /// From an address with this many recent failures.
    Failing(u32),
}

/// Why a login is not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRefusal {
    /// Its address already has a login waiting or being checked.
    AddressBusy,
    /// The queue is full of logins of at least its standing.
    Full,
}

/// A login's place, to cancel it by.
pub type Ticket = u64;

/// What [`CheckQueue::request`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn<T> {
    /// Check it now (a worker was free); tell the queue when done.
    Now,
    /// Wait for the handle to be handed back by [`CheckQueue::finished`];
    /// `displaced` is the handle of a worse login that lost its place.
    Wait {
        ticket: Ticket,
        displaced: Option<T>,
    },
}

#[derive(Debug)]
struct Waiter<T> {
    ip: IpAddr,
    standing: Standing,
    ticket: Ticket,
    handle: T,
}

/// The password-check queue.
#[derive(Debug)]
pub struct CheckQueue<T> {
    workers: usize,
    max_waiting: usize,
    /// Addresses being checked now.
    running: Vec<IpAddr>,
    waiting: Vec<Waiter<T>>,
    next: Ticket,
}

impl<T> CheckQueue<T> {
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        CheckQueue {
            workers,
            max_waiting,
            running: Vec::new(),
            waiting: Vec::new(),
            next: 1,
        }
    }

    /// A login from `ip` asks for a check.
    pub fn request(
        &mut self,
        ip: IpAddr,
        standing: Standing,
        handle: T,
    ) -> Result<Turn<T>, QueueRefusal> {
        if self.running.contains(&ip) || self.waiting.iter().any(|w| w.ip == ip) {
            return Err(QueueRefusal::AddressBusy);
        }
        if self.running.len() < self.workers {
            self.running.push(ip);
            return Ok(Turn::Now);
        }
        let mut displaced = None;
        if self.waiting.len() >= self.max_waiting {
            let worst = self
                .worst()
                .filter(|&i| self.waiting[i].standing > standing);
            let Some(i) = worst else {
                return Err(QueueRefusal::Full);
            };
            displaced = Some(self.waiting.remove(i).handle);
        }
        let ticket = self.next;
        self.next += 1;
        self.waiting.push(Waiter {
            ip,
            standing,
            ticket,
            handle,
        });
        Ok(Turn::Wait { ticket, displaced })
    }

    /// The check of `ip` ended: the handle of the next login to check, if
    /// any (it now holds a worker; it must call `finished` in turn).
    pub fn finished(&mut self, ip: IpAddr) -> Option<T> {
        if let Some(i) = self.running.iter().position(|r| *r == ip) {
            self.running.swap_remove(i);
        }
        let next = self.best()?;
        let w = self.waiting.remove(next);
        self.running.push(w.ip);
        Some(w.handle)
    }

    /// A waiting login gave up (its client left, or it waited too long).
    pub fn cancel(&mut self, ticket: Ticket) {
        self.waiting.retain(|w| w.ticket != ticket);
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Best standing, then first come (tickets grow).
    fn best(&self) -> Option<usize> {
        let key = |w: &Waiter<T>| (w.standing, w.ticket);
        (0..self.waiting.len()).min_by_key(|&i| key(&self.waiting[i]))
    }

    /// Worst standing, then last come.
    fn worst(&self) -> Option<usize> {
        let key = |w: &Waiter<T>| (w.standing, w.ticket);
        (0..self.waiting.len()).max_by_key(|&i| key(&self.waiting[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from((0x0a00_0000 + n).to_be_bytes())
    }

    fn ticket(t: Result<Turn<u32>, QueueRefusal>) -> Ticket {
        match t {
            Ok(Turn::Wait { ticket, .. }) => ticket,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_owner_is_checked_before_a_flood_of_failing_addresses() {
        let mut q = CheckQueue::new(2, 64);
        assert_eq!(q.request(ip(1), Standing::Failing(1), 1), Ok(Turn::Now));
        assert_eq!(q.request(ip(2), Standing::Failing(2), 2), Ok(Turn::Now));
        for n in 3..60 {
            ticket(q.request(ip(n), Standing::Failing(1 + n % 3), n));
        }
        let owner = ip(1000);
        ticket(q.request(owner, Standing::Clean, 1000));
        assert_eq!(q.finished(ip(1)), Some(1000), "next after one check");
    }

    #[test]
    fn a_known_browser_goes_first_and_ties_are_first_come() {
        let mut q = CheckQueue::new(1, 8);
        assert_eq!(q.request(ip(1), Standing::Clean, 1), Ok(Turn::Now));
        ticket(q.request(ip(2), Standing::Clean, 2));
        ticket(q.request(ip(3), Standing::Clean, 3));
        ticket(q.request(ip(4), Standing::Known, 4));
        assert_eq!(q.finished(ip(1)), Some(4));
        assert_eq!(q.finished(ip(4)), Some(2));
        assert_eq!(q.finished(ip(2)), Some(3));
        assert_eq!(q.finished(ip(3)), None);
        assert_eq!(q.request(ip(9), Standing::Failing(9), 9), Ok(Turn::Now));
    }

    #[test]
    fn one_login_per_address_at_a_time() {
        let mut q = CheckQueue::new(1, 8);
        assert_eq!(q.request(ip(1), Standing::Clean, 1), Ok(Turn::Now));
        assert_eq!(
            q.request(ip(1), Standing::Clean, 2),
            Err(QueueRefusal::AddressBusy)
        );
        ticket(q.request(ip(2), Standing::Clean, 3));
        assert_eq!(
            q.request(ip(2), Standing::Known, 4),
            Err(QueueRefusal::AddressBusy)
        );
        assert_eq!(q.finished(ip(1)), Some(3));
        ticket(q.request(ip(1), Standing::Clean, 5));
    }

    #[test]
    fn a_full_queue_keeps_the_best() {
        let mut q = CheckQueue::new(1, 2);
        assert_eq!(q.request(ip(1), Standing::Failing(1), 1), Ok(Turn::Now));
        ticket(q.request(ip(2), Standing::Failing(3), 2));
        ticket(q.request(ip(3), Standing::Failing(1), 3));
        assert_eq!(
            q.request(ip(4), Standing::Failing(5), 4),
            Err(QueueRefusal::Full),
            "worse than all waiting"
        );
        let t = q.request(ip(5), Standing::Clean, 5);
        assert!(
            matches!(
                t,
                Ok(Turn::Wait {
                    displaced: Some(2),
                    ..
                })
            ),
            "the worst waiting login lost its place: {t:?}"
        );
        assert_eq!(q.waiting(), 2);
        assert_eq!(q.finished(ip(1)), Some(5));
    }

    #[test]
    fn a_login_that_gave_up_leaves_the_queue() {
        let mut q = CheckQueue::new(1, 8);
        assert_eq!(q.request(ip(1), Standing::Clean, 1), Ok(Turn::Now));
        let t = ticket(q.request(ip(2), Standing::Clean, 2));
        q.cancel(t);
        assert_eq!(q.waiting(), 0);
        assert_eq!(q.finished(ip(1)), None);
        assert_eq!(q.request(ip(2), Standing::Clean, 2), Ok(Turn::Now));
    }
}
