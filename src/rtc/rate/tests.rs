use super::*;

const H: VideoCodec = VideoCodec::H264;

fn policy() -> (RatePolicy, Instant) {
    let range = RateRange {
        floor_kbps: 300,
        ceiling_kbps: 2000,
    };
    (RatePolicy::new(&[(H, range)]), Instant::now())
}

fn drain(p: &mut RatePolicy) -> Vec<u32> {
    std::iter::from_fn(|| p.poll_target())
        .map(|(_, k)| k)
        .collect()
}

/// Runs the policy's own timer until `until`.
fn run_until(p: &mut RatePolicy, until: Instant) {
    while let Some(t) = p.poll_timeout().filter(|t| *t <= until) {
        p.handle_timeout(t);
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn twcc(p: &mut RatePolicy, at: Instant, id: u64, kbps: u64) {
    p.estimate(at, ViewerId(id), H, Estimate::Twcc(kbps));
}

/// Links measured at `t0`, and the fast window over by the returned time.
fn measured(p: &mut RatePolicy, t0: Instant, links: &[(u64, u64)]) -> Instant {
    for &(id, kbps) in links {
        twcc(p, t0, id, kbps);
    }
    drain(p);
    t0 + FAST_WINDOW
}

#[test]
fn idle_keeps_the_ceiling_and_a_first_viewer_brings_the_start_rate() {
    let (mut p, t0) = policy();
    assert_eq!(p.target(H), Some(2000));
    p.join(t0, ViewerId(1), H);
    assert_eq!(drain(&mut p), vec![255], "300 kbit/s x the margin");
    // str0m's first report is its start value, not a measurement.
    twcc(&mut p, t0 + ms(100), 1, START_ESTIMATE_KBPS as u64);
    assert_eq!(drain(&mut p), Vec::<u32>::new());
    assert!(
        !p.paced(ViewerId(1)),
        "unmeasured: its first keyframe leaves at once"
    );
}

#[test]
fn a_measured_lan_gets_the_ceiling_at_once_and_is_not_paced() {
    let (mut p, t0) = policy();
    p.join(t0, ViewerId(1), H);
    p.connected(t0 + ms(50), ViewerId(1));
    twcc(&mut p, t0 + ms(200), 1, 8000);
    assert_eq!(drain(&mut p), vec![255, 2000]);
    assert!(!p.paced(ViewerId(1)));
}

#[test]
fn a_slow_link_is_followed_up_at_once_in_its_first_seconds_and_paced() {
    let (mut p, t0) = policy();
    p.join(t0, ViewerId(1), H);
    twcc(&mut p, t0 + ms(200), 1, 500);
    twcc(&mut p, t0 + ms(400), 1, 760);
    assert_eq!(drain(&mut p), vec![255, 425, 646]);
    assert!(p.paced(ViewerId(1)));
    // After the window, rises hold and step again.
    twcc(&mut p, t0 + FAST_WINDOW + ms(300), 1, 1500);
    assert_eq!(drain(&mut p), Vec::<u32>::new(), "no rise at once");
}

#[test]
fn falls_at_once_to_the_slowest_link() {
    let (mut p, t0) = policy();
    let t = measured(&mut p, t0, &[(1, 5000)]);
    assert_eq!(p.target(H), Some(2000), "a fast link keeps the ceiling");
    twcc(&mut p, t, 2, 1000);
    assert_eq!(drain(&mut p), vec![850]);
    assert!(!p.thinned(ViewerId(2)));
}

#[test]
fn rises_gently_after_holding() {
    let (mut p, t0) = policy();
    let t = measured(&mut p, t0, &[(1, 1000)]);
    twcc(&mut p, t + ms(100), 1, 3000);
    assert_eq!(drain(&mut p), Vec::<u32>::new(), "no rise at once");
    run_until(&mut p, t + Duration::from_secs(20));
    let steps = drain(&mut p);
    assert_eq!(*steps.last().unwrap(), 2000);
    for w in steps.windows(2) {
        assert!(
            w[1] as f64 <= w[0] as f64 * (1.0 + RISE_STEP) + 1.0,
            "{steps:?}"
        );
    }
    assert!(steps.len() >= 3, "in steps: {steps:?}");
}

#[test]
fn after_an_overflow_the_level_below_it_comes_back_in_one_step() {
    let (mut p, t0) = policy();
    let t = measured(&mut p, t0, &[(1, 900)]);
    assert_eq!(p.target(H), Some(765));
    // The link overflowed: its estimate crashes on the loss.
    twcc(&mut p, t + ms(100), 1, 350);
    assert_eq!(drain(&mut p), vec![297]);
    // It recovers; the rise holds 1 s, then goes to 85 % of 765 at once.
    twcc(&mut p, t + ms(1500), 1, 900);
    run_until(&mut p, t + ms(2600));
    assert_eq!(drain(&mut p), vec![650]);
    // Near where it overflowed: 5 % steps, 3 s apart, to a quarter above.
    run_until(&mut p, t + ms(5400));
    assert_eq!(drain(&mut p), Vec::<u32>::new());
    run_until(&mut p, t + ms(5600));
    assert_eq!(drain(&mut p), vec![682]);
    run_until(&mut p, t + Duration::from_secs(20));
    assert_eq!(drain(&mut p), vec![716, 751, 765]);
}

#[test]
fn a_joiner_bringing_the_rate_down_is_no_overflow() {
    let (mut p, t0) = policy();
    let t = measured(&mut p, t0, &[(1, 5000)]);
    assert_eq!(p.target(H), Some(2000));
    p.join(t, ViewerId(2), H);
    twcc(&mut p, t + ms(200), 2, 600);
    assert_eq!(drain(&mut p), vec![510]);
    // Its link gets faster: 10 % steps, no jump towards 2000.
    twcc(&mut p, t + ms(1500), 2, 1500);
    run_until(&mut p, t + ms(3000));
    assert_eq!(drain(&mut p), vec![561]);
}

#[test]
fn a_joiner_counts_only_once_measured() {
    let (mut p, t0) = policy();
    let t = measured(&mut p, t0, &[(1, 5000)]);
    p.join(t, ViewerId(2), H);
    p.connected(t + ms(50), ViewerId(2));
    assert_eq!(
        drain(&mut p),
        Vec::<u32>::new(),
        "the watcher keeps its rate"
    );
    twcc(&mut p, t + ms(100), 2, START_ESTIMATE_KBPS as u64);
    assert_eq!(
        drain(&mut p),
        Vec::<u32>::new(),
        "the start value is no measurement"
    );
    twcc(&mut p, t + ms(300), 2, 800);
    assert_eq!(drain(&mut p), vec![680]);
}

#[test]
fn a_link_that_is_never_measured_stops_counting() {
    let (mut p, t0) = policy();
    p.join(t0, ViewerId(1), H);
    assert_eq!(drain(&mut p), vec![255]);
    run_until(&mut p, t0 + Duration::from_secs(30));
    assert_eq!(
        drain(&mut p),
        Vec::<u32>::new(),
        "joining: the session's own timeout rules"
    );
    p.connected(t0 + Duration::from_secs(30), ViewerId(1));
    assert_eq!(
        p.poll_timeout(),
        Some(t0 + Duration::from_secs(30) + MEASURE_WITHIN)
    );
    run_until(&mut p, t0 + Duration::from_secs(60));
    let back = drain(&mut p);
    assert_eq!(back.last(), Some(&2000), "back to the ceiling: {back:?}");
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn a_link_below_the_floor_is_thinned_and_does_not_lower_the_others() {
    let (mut p, t0) = policy();
    twcc(&mut p, t0, 1, 1500);
    twcc(&mut p, t0, 2, 200);
    assert!(p.thinned(ViewerId(2)));
    assert!(!p.thinned(ViewerId(1)));
    assert_eq!(drain(&mut p), vec![1275]);
    // It recovers only well above the floor.
    twcc(&mut p, t0, 2, 380);
    assert!(p.thinned(ViewerId(2)), "323 kbit/s usable is at the edge");
    twcc(&mut p, t0, 2, 500);
    assert!(!p.thinned(ViewerId(2)));
    assert_eq!(drain(&mut p), vec![425]);
}

#[test]
fn every_link_below_the_floor_means_the_slowest_link_and_every_frame() {
    let (mut p, t0) = policy();
    twcc(&mut p, t0, 1, 250);
    assert_eq!(
        drain(&mut p),
        vec![212],
        "under the floor: what the link carries"
    );
    assert!(!p.thinned(ViewerId(1)), "nobody to protect");
    twcc(&mut p, t0, 1, 50);
    assert_eq!(drain(&mut p), vec![MIN_KBPS]);
    twcc(&mut p, t0, 2, 200);
    assert!(!p.thinned(ViewerId(1)) && !p.thinned(ViewerId(2)));
    twcc(&mut p, t0, 3, 3000);
    assert!(p.thinned(ViewerId(1)) && p.thinned(ViewerId(2)));
}

#[test]
fn pacing_follows_the_link_with_hysteresis() {
    let (mut p, t0) = policy();
    twcc(&mut p, t0, 1, 3000);
    assert!(
        p.paced(ViewerId(1)),
        "2,550 usable is under 1.5 x the ceiling"
    );
    twcc(&mut p, t0, 1, 3800);
    assert!(p.paced(ViewerId(1)), "3,230 usable: within the hysteresis");
    twcc(&mut p, t0, 1, 4200);
    assert!(!p.paced(ViewerId(1)));
    twcc(&mut p, t0, 1, 3800);
    assert!(!p.paced(ViewerId(1)));
    twcc(&mut p, t0, 1, 3000);
    assert!(p.paced(ViewerId(1)));
}

#[test]
fn the_slowest_viewer_leaving_lets_the_rate_rise() {
    let (mut p, t0) = policy();
    let t = measured(&mut p, t0, &[(1, 4000), (2, 800)]);
    assert_eq!(p.target(H), Some(680));
    p.remove(t + Duration::from_secs(1), ViewerId(2));
    run_until(&mut p, t + Duration::from_secs(30));
    assert_eq!(drain(&mut p).last(), Some(&2000));
    p.remove(t + Duration::from_secs(31), ViewerId(1));
    assert_eq!(p.target(H), Some(2000));
}

#[test]
fn small_wobbles_do_not_touch_the_encoder() {
    let (mut p, t0) = policy();
    let t = measured(&mut p, t0, &[(1, 1000)]);
    twcc(&mut p, t, 1, 990);
    assert_eq!(drain(&mut p), Vec::<u32>::new());
}

#[test]
fn codecs_are_decided_apart() {
    let t0 = Instant::now();
    let mut p = RatePolicy::new(&[
        (H, RateRange::from_ceiling(2000)),
        (VideoCodec::Vp8, RateRange::from_ceiling(1000)),
    ]);
    p.estimate(t0, ViewerId(1), VideoCodec::Vp8, Estimate::Remb(600));
    assert_eq!(p.poll_target(), Some((VideoCodec::Vp8, 510)));
    assert_eq!(p.target(H), Some(2000));
    assert_eq!(RateRange::from_ceiling(2000).floor_kbps, 400);
    assert_eq!(RateRange::from_ceiling(80).floor_kbps, 80);
    assert_eq!(RateRange::from_ceiling(80).start_kbps(), 80);
}
