//! How much loss the shared Opus encoder plans for (its in-band FEC), from
//! what the listeners' links report. Sans-IO: the rtc task hands it the
//! worst listener's loss and the time, and tells the encoder the result.
//!
//! A report is one short window of one link, and a plan costs the voice:
//! libopus makes room for in-band FEC by taking bits from each frame (at
//! 32 kbit/s the audio stamp lost 13-20 dB of margin with any loss planned,
//! and most of its stamps at 4 of 40 alignments with a frame; none without).
//! So, as WebRTC's own Opus sender does, the reports are averaged over
//! seconds and the plan moves between a few levels, with room between
//! climbing to one and leaving it: one lossy report, a probe's burst or a
//! viewer's first keyframe overflowing its queue does not switch FEC on,
//! and a loss that wobbles around a level does not flap between two.

use std::time::{Duration, Instant};

/// How long the reports are averaged over (the smoothing's time constant).
pub const SMOOTHING: Duration = Duration::from_secs(10);
/// The losses the encoder can be told to plan for, percent.
const LEVELS: [u8; 4] = [1, 5, 10, 20];
/// The plan climbs to a level once the smoothed loss reaches this share of
/// it (a steady loss of exactly a level is planned for, though the average
/// only nears it), and leaves it once the loss falls below `STAY` of it.
const CLIMB: f64 = 0.9;
const STAY: f64 = 0.7;

#[derive(Debug, Default)]
pub struct LossPlan {
    /// Smoothed loss, percent.
    smoothed: f64,
    /// The last report, percent, and when it came.
    reported: f64,
    at: Option<Instant>,
    planned: u8,
}

impl LossPlan {
    /// The worst listener reports `loss` (0..=1) as of `now`; returns the
    /// loss to plan for, percent.
    /// A report that is not a number is ignored.
    pub fn observe(&mut self, now: Instant, loss: f32) -> u8 {
        if let Some(at) = self.at {
            // The last report held until now: exact however often asked.
            let dt = now.saturating_duration_since(at).as_secs_f64();
            let keep = (-dt / SMOOTHING.as_secs_f64()).exp();
            self.smoothed = self.reported + (self.smoothed - self.reported) * keep;
        }
        self.at = Some(now);
        if !loss.is_nan() {
            self.reported = f64::from(loss.clamp(0.0, 1.0)) * 100.0;
        }
        self.planned = self.level();
        self.planned
    }

    /// The highest level the smoothed loss has reached: [`CLIMB`] of it to
    /// climb there, [`STAY`] of it to stay.
    fn level(&self) -> u8 {
        LEVELS
            .into_iter()
            .rev()
            .find(|&l| {
                let share = if l > self.planned { CLIMB } else { STAY };
                self.smoothed >= share * f64::from(l)
            })
            .unwrap_or(0)
    }

    pub fn planned(&self) -> u8 {
        self.planned
    }

    /// The smoothed loss, percent (for the logs).
    pub fn smoothed(&self) -> f64 {
        self.smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    /// Feeds `loss` for `secs` in ticks; returns each tick's plan.
    fn feed(p: &mut LossPlan, now: &mut Instant, loss: f32, secs: f64) -> Vec<u8> {
        let ticks = (secs / TICK.as_secs_f64()).round() as usize;
        (0..ticks)
            .map(|_| {
                *now += TICK;
                p.observe(*now, loss)
            })
            .collect()
    }

    #[test]
    fn a_clean_link_plans_for_no_loss() {
        let (mut p, mut now) = (LossPlan::default(), Instant::now());
        assert!(feed(&mut p, &mut now, 0.0, 30.0).iter().all(|&l| l == 0));
    }

    #[test]
    fn one_lossy_report_does_not_switch_fec_on() {
        let (mut p, mut now) = (LossPlan::default(), Instant::now());
        feed(&mut p, &mut now, 0.0, 5.0);
        // A second of 8 % (one receiver report, or a keyframe's overflow).
        let plans = [
            feed(&mut p, &mut now, 0.08, 1.0),
            feed(&mut p, &mut now, 0.0, 10.0),
        ];
        assert!(plans.iter().flatten().all(|&l| l == 0), "{plans:?}");
    }

    #[test]
    fn a_steady_loss_is_planned_for_within_seconds() {
        let (mut p, mut now) = (LossPlan::default(), Instant::now());
        let plans = feed(&mut p, &mut now, 0.05, 40.0);
        let first = plans.iter().position(|&l| l > 0).unwrap();
        assert!(first as f64 * 0.1 <= 2.5, "FEC on after {first} ticks");
        // The average only nears a steady 5 %: planned for from 4.5 % on.
        assert_eq!(*plans.last().unwrap(), 5, "{plans:?}");
        // A steady 4 % is not 5.
        let mut q = LossPlan::default();
        assert_eq!(*feed(&mut q, &mut now, 0.04, 60.0).last().unwrap(), 1);
        // Heavy loss: the top level, no higher.
        assert_eq!(*feed(&mut p, &mut now, 0.5, 20.0).last().unwrap(), 20);
    }

    #[test]
    fn the_plan_goes_back_to_zero_when_the_loss_ends() {
        let (mut p, mut now) = (LossPlan::default(), Instant::now());
        feed(&mut p, &mut now, 0.10, 40.0);
        assert_eq!(p.planned(), 10);
        let plans = feed(&mut p, &mut now, 0.0, 40.0);
        let off = plans.iter().position(|&l| l == 0).unwrap();
        assert!(
            (10.0..=30.0).contains(&(off as f64 * 0.1)),
            "off after {off} ticks"
        );
        assert!(plans[off..].iter().all(|&l| l == 0));
        // Down one level at a time, never back up.
        assert!(plans.windows(2).all(|w| w[1] <= w[0]), "{plans:?}");
    }

    #[test]
    fn a_loss_that_wobbles_around_a_level_does_not_flap() {
        let (mut p, mut now) = (LossPlan::default(), Instant::now());
        feed(&mut p, &mut now, 0.05, 60.0);
        // Reports alternate 4 % and 6 % every second: the average stays
        // near 5 %, above what leaves it (3.5 %).
        let mut plans = Vec::new();
        for i in 0..30 {
            let loss = if i % 2 == 0 { 0.04 } else { 0.06 };
            plans.extend(feed(&mut p, &mut now, loss, 1.0));
        }
        assert!(plans.iter().all(|&l| l == 5), "{plans:?}");
    }

    #[test]
    fn the_average_does_not_depend_on_how_often_it_is_asked() {
        let t0 = Instant::now();
        let (mut often, mut seldom) = (LossPlan::default(), LossPlan::default());
        for i in 0..=3000 {
            often.observe(t0 + Duration::from_millis(i), 0.2);
        }
        seldom.observe(t0, 0.2);
        seldom.observe(t0 + Duration::from_secs(3), 0.2);
        assert!(often.smoothed() > 5.0);
        assert!((often.smoothed() - seldom.smoothed()).abs() < 1e-9);
        // Garbage in is not trusted: out of range is clamped, not a number
        // is ignored.
        seldom.observe(t0 + Duration::from_secs(4), 7.0);
        seldom.observe(t0 + Duration::from_secs(5), f32::NAN);
        assert!(seldom.smoothed().is_finite() && seldom.smoothed() <= 100.0);
    }
}
