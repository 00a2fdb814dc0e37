//! The camera's life, sans-IO: what to open, when to try again, and what
//! the viewers are told.
//!
//! A camera that vanishes (unplugged, a driver timeout, `rpicam-vid`
//! crashing) must never take the media side with it, and must come back by
//! itself: the same camera, found again by its identity rather than its
//! node number, or for `auto` the first real camera; never the test pattern
//! once a real camera was in use. The IO shell (`capture::run`) opens what
//! [`Supervisor::poll_open`] asks for and reports the outcome; this type
//! holds no device and reads no clock, so its policy is tested on simulated
//! time.

use std::time::{Duration, Instant};

use super::SourceSpec;

/// How often a missing camera is looked for.
pub const RETRY: Duration = Duration::from_secs(1);
/// A source that dies sooner than this after opening counts as a crash loop
/// (a child that exits at once, a camera that fails on every stream-on).
pub const SHORT_LIFE: Duration = Duration::from_secs(5);
/// The longest wait between two starts of a source in a crash loop.
pub const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// How often `auto`, showing the test pattern, looks for a camera that was
/// plugged in since.
pub const RESCAN: Duration = Duration::from_secs(2);

/// Who a camera is, independent of its node number: a replugged USB camera
/// may come back as another `/dev/videoN`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CameraId {
    /// The driver (`VIDIOC_QUERYCAP`), e.g. `uvcvideo`, or `rpicam`.
    pub driver: String,
    /// The card name, e.g. `HD Pro Webcam C920`, or the CSI sensor.
    pub card: String,
    /// Where it sits, e.g. `usb-0000:01:00.0-1.2`, `platform:vivid-000`, `csi:0`.
    pub bus: String,
    /// Its `/dev/v4l/by-id/` name (USB cameras with a serial number), if any.
    pub by_id: Option<String>,
}

impl CameraId {
    /// Whether `other` is this camera: the same by-id name when both have
    /// one (it holds the serial number, so it survives another USB port);
    /// else the same driver, card and bus.
    pub fn matches(&self, other: &CameraId) -> bool {
        match (&self.by_id, &other.by_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.driver == other.driver && self.card == other.card && self.bus == other.bus,
        }
    }
}

/// What the shell should open next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// What `--source` names, as given (the first start, the pattern, a
    /// CSI camera by number).
    AsGiven,
    /// The camera seen before, wherever it is now.
    Same(CameraId),
    /// `auto`: the first real camera that works, never the pattern.
    AnyCamera,
    /// `auto` at the first start: the first real camera, else the pattern.
    CameraOrPattern,
    /// `auto` on the pattern: a V4L2 camera plugged in since (CSI cameras
    /// are not hot-plugged, and asking rpicam-vid costs a second of CPU).
    NewCamera,
}

/// The camera as viewers and `/api/status` see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// Not opened yet.
    #[default]
    Starting,
    /// Frames are coming.
    Live,
    /// The camera is gone (or never came): viewers see the "camera lost"
    /// slate while it is looked for.
    Lost,
}

/// Why a source is not delivering, as the supervisor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It could not be opened (missing, busy, no usable format).
    Open,
    /// It was delivering and stopped (unplugged, stalled, child exited).
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for the outcome of an open.
    Opening,
    /// Delivering since `since`; `camera` is `None` for the test pattern,
    /// which `auto` replaces with a camera found by a rescan.
    Live {
        camera: Option<CameraId>,
        since: Instant,
        rescan_at: Option<Instant>,
    },
    /// Nothing delivering; try again at `retry_at`.
    Lost { retry_at: Instant },
}

/// The restart policy of one `--source`.
#[derive(Debug)]
pub struct Supervisor {
    auto: bool,
    state: State,
    /// The real camera last in use: what is looked for once it is lost.
    known: Option<CameraId>,
    /// Since when no source has delivered (after the first start).
    lost_at: Option<Instant>,
    /// Consecutive short lives (each doubles the wait before the next start).
    crashes: u32,
    /// Whether the first open was handed out.
    started: bool,
}

impl Supervisor {
    pub fn new(spec: &SourceSpec, now: Instant) -> Self {
        Supervisor {
            auto: *spec == SourceSpec::Auto,
            state: State::Lost { retry_at: now },
            known: None,
            lost_at: None,
            crashes: 0,
            started: false,
        }
    }

    /// What to open now, if anything: the shell calls this when
    /// [`Supervisor::poll_timeout`] has passed and reports back with
    /// [`Supervisor::opened`] or [`Supervisor::failed`].
    pub fn poll_open(&mut self, now: Instant) -> Option<Target> {
        match &mut self.state {
            State::Lost { retry_at } if now >= *retry_at => {
                let target = self.target();
                self.started = true;
                self.state = State::Opening;
                Some(target)
            }
            // A rescan is tried alongside the pattern, which keeps running.
            State::Live {
                camera: None,
                rescan_at: Some(at),
                ..
            } if now >= *at => {
                *at = now + RESCAN;
                Some(Target::NewCamera)
            }
            _ => None,
        }
    }

    fn target(&self) -> Target {
        match (&self.known, self.auto, self.started) {
            (Some(id), false, _) => Target::Same(id.clone()),
            (None, true, false) => Target::CameraOrPattern,
            // Once started, auto never goes back to the pattern.
            (_, true, _) => Target::AnyCamera,
            (None, false, _) => Target::AsGiven,
        }
    }

    /// The real camera last in use, which `auto` tries first when it looks
    /// for any camera.
    pub fn preferred(&self) -> Option<&CameraId> {
        self.known.as_ref()
    }

    /// The source opened: `camera` is `None` for the test pattern.
    pub fn opened(&mut self, now: Instant, camera: Option<CameraId>) {
        if camera.is_some() {
            self.known = camera.clone();
        }
        let rescan_at = (self.auto && camera.is_none()).then_some(now + RESCAN);
        self.lost_at = None;
        self.state = State::Live {
            camera,
            since: now,
            rescan_at,
        };
    }

    /// The source did not open, or stopped delivering.
    pub fn failed(&mut self, now: Instant, how: Failure) {
        match (&self.state, how) {
            // A failed rescan beside the pattern changes nothing.
            (State::Live { camera: None, .. }, Failure::Open) => return,
            (State::Live { since, .. }, Failure::Stopped) => {
                let young = now.saturating_duration_since(*since) < SHORT_LIFE;
                self.crashes = if young {
                    self.crashes.saturating_add(1)
                } else {
                    0
                };
            }
            _ => {}
        }
        self.lost_at.get_or_insert(now);
        self.state = State::Lost {
            retry_at: now + self.wait(),
        };
    }

    /// The wait before the next try: a second, doubled for each start in a
    /// row that died young, up to [`MAX_BACKOFF`].
    fn wait(&self) -> Duration {
        RETRY
            .saturating_mul(1u32 << self.crashes.saturating_sub(1).min(5))
            .min(MAX_BACKOFF)
    }

    /// When [`Supervisor::poll_open`] has something to do next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Lost { retry_at } => Some(*retry_at),
            State::Live { rescan_at, .. } => *rescan_at,
            State::Opening => None,
        }
    }

    pub fn state(&self) -> CameraState {
        match (&self.state, self.lost_at) {
            (State::Live { .. }, _) => CameraState::Live,
            (_, Some(_)) => CameraState::Lost,
            _ => CameraState::Starting,
        }
    }

    /// Since when no source has delivered.
    pub fn lost_since(&self) -> Option<Instant> {
        self.lost_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(bus: &str, by_id: Option<&str>) -> CameraId {
        CameraId {
            driver: "uvcvideo".into(),
            card: "HD Pro Webcam C920".into(),
            bus: bus.into(),
            by_id: by_id.map(Into::into),
        }
    }

    /// Runs the supervisor on simulated time: `world` answers each open.
    struct Sim {
        sup: Supervisor,
        now: Instant,
        opens: Vec<(Duration, Target)>,
        t0: Instant,
    }

    impl Sim {
        fn new(spec: SourceSpec) -> Sim {
            let t0 = Instant::now();
            Sim {
                sup: Supervisor::new(&spec, t0),
                now: t0,
                opens: Vec::new(),
                t0,
            }
        }

        /// Advances to `until`, answering every open with `world`.
        fn run(
            &mut self,
            until: Duration,
            mut world: impl FnMut(Duration, &Target) -> Option<Option<CameraId>>,
        ) {
            let end = self.t0 + until;
            loop {
                if let Some(target) = self.sup.poll_open(self.now) {
                    let at = self.now - self.t0;
                    self.opens.push((at, target.clone()));
                    let rescan = self.sup.state() == CameraState::Live;
                    match world(at, &target) {
                        Some(cam) if !(rescan && cam.is_none()) => self.sup.opened(self.now, cam),
                        _ => self.sup.failed(self.now, Failure::Open),
                    }
                    continue;
                }
                match self.sup.poll_timeout() {
                    Some(t) if t <= end => self.now = t.max(self.now),
                    _ => {
                        self.now = end;
                        return;
                    }
                }
            }
        }

        fn stop(&mut self) {
            self.sup.failed(self.now, Failure::Stopped);
        }
    }

    #[test]
    fn a_named_camera_is_looked_for_every_second_by_identity() {
        let mut sim = Sim::new(SourceSpec::Device("/dev/video0".into()));
        let c920 = camera("usb-0000:01:00.0-1.2", None);
        sim.run(Duration::ZERO, |_, _| Some(Some(c920.clone())));
        assert_eq!(sim.opens, vec![(Duration::ZERO, Target::AsGiven)]);
        assert_eq!(sim.sup.state(), CameraState::Live);

        // Unplugged after 30 s; back at 33.5 s.
        sim.run(Duration::from_secs(30), |_, _| unreachable!("live"));
        sim.stop();
        assert_eq!(sim.sup.state(), CameraState::Lost);
        assert_eq!(sim.sup.lost_since(), Some(sim.t0 + Duration::from_secs(30)));
        let back = Duration::from_millis(33_500);
        sim.run(Duration::from_secs(40), |at, target| {
            assert_eq!(target, &Target::Same(c920.clone()), "never the node again");
            (at >= back).then(|| Some(c920.clone()))
        });
        let tries: Vec<u64> = sim.opens[1..].iter().map(|(t, _)| t.as_secs()).collect();
        assert_eq!(tries, vec![31, 32, 33, 34], "once a second");
        assert_eq!(sim.sup.state(), CameraState::Live);
        assert!(sim.opens.last().unwrap().0 - back <= Duration::from_secs(1));
    }

    #[test]
    fn starting_without_the_camera_waits_for_it() {
        let mut sim = Sim::new(SourceSpec::Device("/dev/video0".into()));
        assert_eq!(sim.sup.state(), CameraState::Starting);
        sim.run(Duration::from_millis(4_500), |_, _| None);
        assert_eq!(sim.opens.len(), 5, "0, 1, 2, 3 and 4 s");
        assert_eq!(sim.sup.state(), CameraState::Lost);
        assert!(sim.opens.iter().all(|(_, t)| *t == Target::AsGiven));
    }

    #[test]
    fn auto_never_falls_back_to_the_pattern_once_a_camera_was_used() {
        let mut sim = Sim::new(SourceSpec::Auto);
        let cam = camera("usb-1", Some("usb-046d_C920_ABC-video-index0"));
        sim.run(Duration::ZERO, |_, _| Some(Some(cam.clone())));
        assert_eq!(sim.opens[0].1, Target::CameraOrPattern);
        sim.stop();
        sim.run(Duration::from_secs(10), |_, target| {
            assert_eq!(target, &Target::AnyCamera, "the pattern is not asked for");
            None
        });
        assert_eq!(sim.sup.state(), CameraState::Lost);
        assert_eq!(sim.sup.preferred(), Some(&cam));
    }

    #[test]
    fn auto_on_the_pattern_picks_up_a_camera_plugged_in_later() {
        let mut sim = Sim::new(SourceSpec::Auto);
        let cam = camera("usb-1", None);
        let plugged = Duration::from_secs(7);
        sim.run(Duration::from_secs(12), |at, target| match target {
            Target::CameraOrPattern => Some(None),
            Target::NewCamera => (at >= plugged).then(|| Some(cam.clone())),
            other => panic!("{other:?}"),
        });
        let rescans: Vec<u64> = sim.opens[1..].iter().map(|(t, _)| t.as_secs()).collect();
        assert_eq!(
            rescans,
            vec![2, 4, 6, 8],
            "every RESCAN until found, then none"
        );
        assert_eq!(sim.sup.state(), CameraState::Live);
        assert_eq!(sim.sup.preferred(), Some(&cam));
    }

    #[test]
    fn a_source_that_dies_young_backs_off_and_a_healthy_run_resets_it() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(&SourceSpec::Rpicam(0), t0);
        let csi = CameraId {
            driver: "rpicam".into(),
            card: "imx708".into(),
            bus: "csi:0".into(),
            by_id: None,
        };
        let mut now = t0;
        let mut starts = Vec::new();
        for _ in 0..7 {
            now = sup.poll_timeout().expect("a retry is due").max(now);
            assert!(sup.poll_open(now).is_some());
            starts.push(now - t0);
            sup.opened(now, Some(csi.clone()));
            // The child exits half a second after each start.
            now += Duration::from_millis(500);
            sup.failed(now, Failure::Stopped);
        }
        let steps: Vec<u128> = starts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect();
        assert_eq!(steps, vec![1_500, 2_500, 4_500, 8_500, 16_500, 16_500]);
        assert_eq!(sup.poll_open(now), None, "not before its time");

        // A run longer than SHORT_LIFE resets the wait to a second.
        now = sup.poll_timeout().unwrap();
        assert_eq!(sup.poll_open(now), Some(Target::Same(csi.clone())));
        sup.opened(now, Some(csi));
        now += SHORT_LIFE;
        sup.failed(now, Failure::Stopped);
        assert_eq!(sup.poll_timeout(), Some(now + RETRY));
    }

    #[test]
    fn identity_survives_a_new_node_and_a_new_port_when_there_is_a_serial() {
        let here = camera("usb-0000:01:00.0-1.2", None);
        assert!(here.matches(&camera("usb-0000:01:00.0-1.2", None)));
        assert!(
            !here.matches(&camera("usb-0000:01:00.0-1.3", None)),
            "another C920"
        );
        let serial = camera(
            "usb-0000:01:00.0-1.2",
            Some("usb-046d_C920_AB12-video-index0"),
        );
        assert!(serial.matches(&camera(
            "usb-0000:01:00.0-1.4",
            Some("usb-046d_C920_AB12-video-index0")
        )));
        assert!(!serial.matches(&camera(
            "usb-0000:01:00.0-1.2",
            Some("usb-046d_C920_ZZ99-video-index0")
        )));
    }
}
