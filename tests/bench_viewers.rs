//! A benchmark, not a test (ignored; `bench/viewers.sh` runs it in a
//! release build): rtcam's cost per viewer. Light str0m viewers (no
//! decoding) join a 1280x720@30 stream in steps up to 100; at each step,
//! over a window, it prints rtcam's CPU (% of one core, from /proc), its RSS,
//! and the frames each viewer received per second. The viewers run on the
//! same machine (each decrypts SRTP in a thread of its own), so on a small
//! host the figures at many viewers say as much about the viewers as about
//! rtcam: the machine's load is printed too. Asserts nothing.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

fn steps() -> Vec<usize> {
    std::env::var("RTCAM_BENCH_VIEWERS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 25, 50, 100])
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().next().unwrap_or("?").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/viewers.sh"]
async fn cost_per_viewer() {
    let window = env_secs("RTCAM_BENCH_SECONDS", 10);
    let server = Server::start_bench(128);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut counters: Vec<Arc<AtomicU64>> = Vec::new();
    let mut threads = Vec::new();
    println!(
        "rtcam with light viewers, 1280x720@30, {window:?} a step (release build: bench/viewers.sh)"
    );
    println!(
        "{:>8} {:>12} {:>10} {:>16} {:>18} {:>10}",
        "viewers", "rtcam CPU %", "RSS MiB", "fps/viewer min", "fps/viewer mean", "load avg"
    );
    let idle_rss = server.rss_kib().unwrap_or(0);
    println!("{:>8} {:>12} {:>10.1}", 0, "-", idle_rss as f64 / 1024.0);
    let mut last = (0usize, 0.0f64, idle_rss);
    for target in steps() {
        while counters.len() < target {
            let mut client = Client::new();
            whep_connect(&server, &mut client).await;
            let frames = Arc::new(AtomicU64::new(0));
            counters.push(frames.clone());
            let until = Until::Counted {
                stop: stop.clone(),
                frames,
            };
            threads.push(std::thread::spawn(move || {
                client.run_until(until, Duration::from_secs(3600), true)
            }));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let (cpu0, t0) = (server.cpu_time().unwrap_or_default(), Instant::now());
        tokio::time::sleep(window).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (server.cpu_time().unwrap_or_default() - cpu0).as_secs_f64() / secs * 100.0;
        let fps: Vec<f64> = counters
            .iter()
            .zip(&before)
            .map(|(c, b)| (c.load(Ordering::Relaxed) - b) as f64 / secs)
            .collect();
        let min = fps.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = fps.iter().sum::<f64>() / fps.len() as f64;
        let rss = server.rss_kib().unwrap_or(0);
        println!(
            "{target:>8} {cpu:>12.1} {:>10.1} {min:>16.1} {mean:>18.1} {:>10}",
            rss as f64 / 1024.0,
            loadavg()
        );
        if target > last.0 && last.0 > 0 {
            let added = (target - last.0) as f64;
            println!(
                "{:>8}   per added viewer: {:.2} % CPU, {:.0} KB RSS",
                "",
                (cpu - last.1) / added,
                (rss as f64 - last.2 as f64) / added
            );
        }
        last = (target, cpu, rss);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
}
