//! Keyframe throttle: many asks in a short window cost one IDR.
//!
//! One encoder serves every viewer, so an IDR asked for by one reaches all.
//! A joining viewer, a PLI storm after loss, or ten viewers joining at once
//! must not turn the stream into a run of IDRs (each is 10-20x a P-frame and
//! stalls everyone's link). Sans-IO: time comes in as an argument.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    last_idr: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    pub fn new(min_interval: Duration) -> Self {
        KeyframeThrottle {
            min_interval,
            last_idr: None,
            pending: false,
        }
    }

    /// Somebody wants a keyframe. It will be granted by a later `poll`.
    pub fn request(&mut self) {
        self.pending = true;
    }

    /// Called once per frame about to be encoded: true when this frame must
    /// be an IDR. A granted request is consumed.
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        let ready = self
            .last_idr
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        if ready {
            self.pending = false;
            self.last_idr = Some(now);
        }
        ready
    }

    /// The encoder produced an IDR on its own (first frame, periodic, scene
    /// change): it satisfies whatever was pending.
    pub fn idr_sent(&mut self, now: Instant) {
        self.pending = false;
        self.last_idr = Some(now);
    }

    pub fn is_pending(&self) -> bool {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_request_is_granted_at_once() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(500 * MS);
        assert!(!k.poll(t0), "nothing asked");
        k.request();
        assert!(k.poll(t0));
        assert!(!k.poll(t0), "consumed");
    }

    #[test]
    fn a_burst_within_the_window_costs_one_more_idr_at_its_end() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(500 * MS);
        k.request();
        assert!(k.poll(t0));
        let mut granted = 0;
        // Ten viewers ask, spread over 300 ms, while frames go by every 33 ms.
        for i in 0..30u32 {
            let now = t0 + i * 33 * MS;
            if i < 10 {
                k.request();
            }
            if k.poll(now) {
                granted += 1;
                assert!(now >= t0 + 500 * MS, "not before the window ends");
            }
        }
        assert_eq!(granted, 1);
    }

    #[test]
    fn an_encoder_idr_satisfies_pending_requests() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(500 * MS);
        k.request();
        k.idr_sent(t0);
        assert!(!k.is_pending());
        assert!(!k.poll(t0 + 1000 * MS));
    }
}
