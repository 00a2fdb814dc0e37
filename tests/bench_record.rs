//! The cost of motion detection and recording (bench/record.sh runs this,
//! release build; it prints and asserts nothing): the CPU of the motion,
//! recorder and disk threads against the H.264 encoder's and the whole
//! process's, at 1280x720 30 fps on the camera-like scene; bytes written an
//! hour in continuous and in motion mode, with the write amplification
//! against the stream's own bytes (mdat payload); and the time from the
//! picture motion was seen in to the event reaching a viewer.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Server;
use common::channels::ChannelViewer;

fn seconds() -> u64 {
    std::env::var("RTCAM_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// CPU time so far of each of the process's threads, by name.
fn thread_cpu(pid: u32) -> BTreeMap<String, Duration> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut by_name = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        *by_name.entry(name).or_insert(Duration::ZERO) += Duration::from_millis(ticks * 1000 / hz);
    }
    by_name
}

/// The clips' media payload (every mdat's body) and their total size.
fn payload(dir: &Path) -> (u64, u64) {
    let (mut media, mut total) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        total += bytes.len() as u64;
        if e.path().to_string_lossy().contains(".mp4") {
            for (kind, _, size) in rtcam::record::fmp4::top_level_boxes(&bytes) {
                if &kind == b"mdat" {
                    media += size - 8;
                }
            }
        }
    }
    (media, total)
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rtcam-bench-rec-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The video packets of the clips: keyframes' and the others' mean size
/// and count (ffprobe).
fn packet_sizes(dir: &Path) -> (f64, usize, f64, usize) {
    let (mut keys, mut others) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if !e.path().to_string_lossy().contains(".mp4") {
            continue;
        }
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=size,flags",
            ])
            .args(["-of", "csv=p=0"])
            .arg(e.path())
            .output()
            .expect("ffprobe");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut f = line.split(',');
            let size: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            match f.next() {
                Some(flags) if flags.starts_with('K') => keys.push(size),
                _ => others.push(size),
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean(&keys), keys.len(), mean(&others), others.len())
}

struct Figures {
    packets: (f64, usize, f64, usize),
    cpu: BTreeMap<String, f64>,
    written: u64,
    media: u64,
    on_disk: u64,
    secs: f64,
}

async fn run(tag: &str, args: &[&str]) -> (Figures, Vec<u64>) {
    let d = dir(tag);
    let ds = d.display().to_string();
    let mut all = vec!["--size", "1280x720", "--record-dir", &ds];
    all.extend_from_slice(args);
    let mut server = Server::start(&all);
    let pid = server.pid().unwrap();
    let mut viewer = ChannelViewer::join(server.http, &server.token).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, t0) = (thread_cpu(pid), Instant::now());
    let written0 = written(&server).await;
    let mut latencies = Vec::new();
    let until = t0 + Duration::from_secs(seconds());
    while Instant::now() < until {
        let left = until
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        if let Some(m) = viewer.wait_for(left, |m| m["type"] == "motion" && m["state"] == "started")
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            latencies.push(now.saturating_sub(m["at"].as_u64().unwrap_or(now)));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = thread_cpu(pid);
    let written = written(&server).await - written0;
    let cpu = after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v.saturating_sub(before.get(k).copied().unwrap_or_default())).as_secs_f64() / secs
                    * 100.0,
            )
        })
        .collect();
    drop(viewer);
    server.terminate(); // SIGTERM: the clip being written is closed
    let (media, on_disk) = payload(&d);
    let packets = packet_sizes(&d);
    let _ = std::fs::remove_dir_all(&d);
    (
        Figures {
            packets,
            cpu,
            written,
            media,
            on_disk,
            secs,
        },
        latencies,
    )
}

async fn written(server: &Server) -> u64 {
    let s = server.status().await;
    s["record"]["written_bytes"].as_u64().unwrap_or(0)
}

fn print(name: &str, f: &Figures) {
    let total: f64 = f.cpu.values().sum();
    let mut threads: Vec<(&String, &f64)> = f.cpu.iter().filter(|(_, v)| **v >= 0.05).collect();
    threads.sort_by(|a, b| b.1.total_cmp(a.1));
    let list: Vec<String> = threads.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
    println!(
        "{name}: whole process {total:.1} % of a core; by thread: {}",
        list.join(", ")
    );
    println!(
        "{name}: written {:.1} MB/hour ({} bytes in {:.0} s); on disk {} bytes, of which media {} bytes: write amplification {:.3}",
        f.written as f64 / f.secs * 3600.0 / 1e6,
        f.written,
        f.secs,
        f.on_disk,
        f.media,
        f.on_disk as f64 / f.media.max(1) as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: bench/record.sh"]
async fn bench_record() {
    println!(); // libtest's "test bench_record ... " ends its line here
    let (off, _) = run(
        "off",
        &["--source", "test", "--record", "off", "--motion", "off"],
    )
    .await;
    print("one viewer, no motion, no recording", &off);
    let (motion, _) = run(
        "motion-only",
        &["--source", "test", "--record", "off", "--motion", "on"],
    )
    .await;
    print("one viewer, motion detection", &motion);
    let (cont, _) = run(
        "continuous",
        &[
            "--source",
            "test",
            "--record",
            "continuous",
            "--motion",
            "off",
        ],
    )
    .await;
    print("one viewer, continuous recording", &cont);
    let (key, nkeys, other, nothers) = cont.packets;
    println!(
        "one viewer, continuous recording: {nkeys} keyframes of {:.1} KB on average (the recorder asks one every 5 s), {nothers} other frames of {:.1} KB: a keyframe is {:.0} ms of the stream at 1935 kbit/s",
        key / 1e3,
        other / 1e3,
        key * 8.0 / 1935.0
    );
    let (still, lat) = run(
        "motion",
        &[
            "--source",
            "test:still",
            "--record",
            "motion",
            "--record-post",
            "1",
        ],
    )
    .await;
    print(
        "one viewer, still scene (3 s of motion every 12 s), recording on motion",
        &still,
    );
    let mut lat = lat;
    lat.sort_unstable();
    println!(
        "motion event to the viewer, from the picture it was seen in: {lat:?} ms (median {:?})",
        lat.get(lat.len() / 2)
    );
    let whole = |f: &Figures| f.cpu.values().sum::<f64>();
    println!(
        "motion detection adds {:.2} % of a core (whole process); recording adds {:.2} %",
        whole(&motion) - whole(&off),
        whole(&cont) - whole(&off)
    );
}
