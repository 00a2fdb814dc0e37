//! A benchmark, not a test (ignored; `bench/soak.sh` runs it in a release
//! build): ten minutes of viewers coming and going. Ten light str0m viewers
//! (no decoding) watch a 1280x720@30 stream of the camera-like scene; every
//! `RTCAM_SOAK_CHURN` seconds the oldest hangs up and a new one joins; once
//! a minute a decoding viewer joins, reads the timestamp stripe of 60
//! frames (stamp-to-receipt latency) and leaves. Printed every minute and at
//! the end: rtcam's RSS and open file descriptors, the light viewers' frames
//! per second, the probe's latency; and the drift between start and end.
//! Asserts nothing.

use crate::common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

struct Light {
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Report>,
}

async fn join_light(server: &Server) -> Light {
    let mut client = Client::new();
    whep_connect(server, &mut client).await;
    let (stop, frames) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let until = Until::Counted {
        stop: stop.clone(),
        frames: frames.clone(),
    };
    let thread =
        std::thread::spawn(move || client.run_until(until, Duration::from_secs(7200), true));
    Light {
        stop,
        frames,
        thread,
    }
}

/// A decoding viewer's median stamp-to-receipt latency over 60 frames.
async fn probe_latency(server: &Server) -> Option<i64> {
    let mut client = Client::new();
    whep_connect(server, &mut client).await;
    let report = tokio::task::spawn_blocking(move || client.run(60, Duration::from_secs(20), true))
        .await
        .ok()?;
    report.latency_p50()
}

struct Sample {
    rss_kib: u64,
    fds: usize,
    latency_ms: Option<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/soak.sh"]
async fn ten_minutes_of_viewers_coming_and_going() {
    let total = env_secs("RTCAM_SOAK_SECONDS", 600);
    let churn = env_secs("RTCAM_SOAK_CHURN", 10);
    let server = Server::start_bench(32);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lights: VecDeque<Light> = VecDeque::new();
    for _ in 0..10 {
        lights.push_back(join_light(&server).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sample = |latency_ms| Sample {
        rss_kib: server.rss_kib().unwrap_or(0),
        fds: server.fd_count().unwrap_or(0),
        latency_ms,
    };
    let first = sample(probe_latency(&server).await);
    println!(
        "soak: 10 light viewers at 1280x720@30, one replaced every {churn:?}, a decoding probe a minute, {total:?}"
    );
    println!(
        "{:>6} {:>8} {:>9} {:>5} {:>13} {:>16}",
        "min", "joins", "RSS MiB", "fds", "probe p50 ms", "fps/viewer min"
    );
    let row = |m: u64, joins: usize, s: &Sample, fps: Option<f64>| {
        println!(
            "{m:>6} {joins:>8} {:>9.1} {:>5} {:>13} {:>16}",
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.latency_ms.map_or("-".into(), |l| l.to_string()),
            fps.map_or("-".into(), |f| format!("{f:.1}"))
        )
    };
    row(0, 10, &first, None);
    let start = Instant::now();
    let (mut joins, mut minute) = (10usize, 1u64);
    let mut next_churn = start + churn;
    let mut minute_start = (Instant::now(), counts(&lights));
    let mut last = None;
    while start.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if Instant::now() >= next_churn {
            next_churn += churn;
            if let Some(old) = lights.pop_front() {
                old.stop.store(true, Ordering::Relaxed);
                let _ = old.thread.join();
            }
            lights.push_back(join_light(&server).await);
            joins += 1;
        }
        if start.elapsed() >= Duration::from_secs(60 * minute) {
            // Frames per second of the viewers that watched the whole minute.
            let (t0, before) = &minute_start;
            let secs = t0.elapsed().as_secs_f64();
            let now = counts(&lights);
            let fps = now
                .iter()
                .filter_map(|(id, n)| {
                    let b = before.iter().find(|(i, _)| i == id)?.1;
                    Some((n - b) as f64 / secs)
                })
                .fold(None, |m: Option<f64>, f| Some(m.map_or(f, |m| m.min(f))));
            let s = sample(probe_latency(&server).await);
            row(minute, joins, &s, fps);
            minute_start = (Instant::now(), counts(&lights));
            last = Some(s);
            minute += 1;
        }
    }
    let last = last.unwrap_or_else(|| sample(None));
    println!(
        "drift from the first minute to the last: RSS {:+.1} MiB, fds {:+}, probe latency {}",
        (last.rss_kib as f64 - first.rss_kib as f64) / 1024.0,
        last.fds as i64 - first.fds as i64,
        match (first.latency_ms, last.latency_ms) {
            (Some(a), Some(b)) => format!("{:+} ms ({a} -> {b})", b - a),
            _ => "-".into(),
        }
    );
    for l in lights {
        l.stop.store(true, Ordering::Relaxed);
        let _ = l.thread.join();
    }
}

/// (viewer index by its counter's address, frames so far) for each light viewer.
fn counts(lights: &VecDeque<Light>) -> Vec<(usize, u64)> {
    lights
        .iter()
        .map(|l| {
            (
                Arc::as_ptr(&l.frames) as usize,
                l.frames.load(Ordering::Relaxed),
            )
        })
        .collect()
}
