//! Which encoders should run, sans-IO: viewer counts and time in, start and
//! stop decisions out.
//!
//! An encoder starts with the first viewer of its codec and stops a grace
//! period after the last one leaves, so a page reload (leave, join again a
//! second later) does not cost a restart. Codecs are independent: a VP8
//! viewer coming or going never touches the H.264 encoder.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::VideoCodec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start(VideoCodec),
    Stop(VideoCodec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Stopped,
    Running,
    /// No viewers since; stops at `until` unless one comes back.
    Draining {
        until: Instant,
    },
}

#[derive(Debug)]
pub struct Demand {
    grace: Duration,
    codecs: BTreeMap<VideoCodec, (State, usize)>,
    actions: VecDeque<Action>,
}

impl Demand {
    pub fn new(grace: Duration) -> Self {
        Demand {
            grace,
            codecs: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// `codec` now has `viewers` viewers.
    pub fn set_viewers(&mut self, now: Instant, codec: VideoCodec, viewers: usize) {
        let (state, count) = self.codecs.entry(codec).or_insert((State::Stopped, 0));
        *count = viewers;
        *state = match (*state, viewers) {
            (State::Stopped, 0) => State::Stopped,
            (State::Stopped, _) => {
                self.actions.push_back(Action::Start(codec));
                State::Running
            }
            (State::Running | State::Draining { .. }, n) if n > 0 => State::Running,
            (State::Running, _) => State::Draining {
                until: now + self.grace,
            },
            (draining, _) => draining,
        };
    }

    /// Time moves on: grace periods that ran out stop their encoder.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (codec, (state, _)) in self.codecs.iter_mut() {
            if let State::Draining { until } = *state
                && now >= until
            {
                *state = State::Stopped;
                self.actions.push_back(Action::Stop(*codec));
            }
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.codecs
            .values()
            .filter_map(|(s, _)| match s {
                State::Draining { until } => Some(*until),
                _ => None,
            })
            .min()
    }

    pub fn viewers(&self, codec: VideoCodec) -> usize {
        self.codecs.get(&codec).map_or(0, |(_, n)| *n)
    }

    pub fn is_running(&self, codec: VideoCodec) -> bool {
        self.codecs
            .get(&codec)
            .is_some_and(|(s, _)| *s != State::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VideoCodec::{H264, Vp8};

    const GRACE: Duration = Duration::from_secs(5);

    fn actions(d: &mut Demand) -> Vec<Action> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    #[test]
    fn first_viewer_starts_last_one_stops_after_the_grace() {
        let t0 = Instant::now();
        let mut d = Demand::new(GRACE);
        d.set_viewers(t0, Vp8, 1);
        assert_eq!(actions(&mut d), vec![Action::Start(Vp8)]);
        d.set_viewers(t0, Vp8, 2);
        d.set_viewers(t0, Vp8, 0);
        assert!(actions(&mut d).is_empty());
        assert_eq!(d.poll_timeout(), Some(t0 + GRACE));
        d.handle_timeout(t0 + GRACE - Duration::from_millis(1));
        assert!(actions(&mut d).is_empty(), "not before the grace ends");
        assert!(d.is_running(Vp8));
        d.handle_timeout(t0 + GRACE);
        assert_eq!(actions(&mut d), vec![Action::Stop(Vp8)]);
        assert!(!d.is_running(Vp8));
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn a_viewer_back_within_the_grace_keeps_the_encoder() {
        let t0 = Instant::now();
        let mut d = Demand::new(GRACE);
        d.set_viewers(t0, H264, 1);
        d.set_viewers(t0, H264, 0);
        d.set_viewers(t0 + Duration::from_secs(1), H264, 1);
        d.handle_timeout(t0 + GRACE * 2);
        assert_eq!(
            actions(&mut d),
            vec![Action::Start(H264)],
            "one start, no stop"
        );
    }

    #[test]
    fn codecs_come_and_go_independently() {
        let t0 = Instant::now();
        let mut d = Demand::new(GRACE);
        d.set_viewers(t0, H264, 3);
        d.set_viewers(t0, Vp8, 1);
        d.set_viewers(t0, Vp8, 0);
        d.handle_timeout(t0 + GRACE);
        assert_eq!(
            actions(&mut d),
            vec![Action::Start(H264), Action::Start(Vp8), Action::Stop(Vp8)]
        );
        assert!(d.is_running(H264));
        assert_eq!(d.viewers(H264), 3);
    }
}
