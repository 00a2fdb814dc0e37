//! Recording onto a real file system that fails under it (a tmpfs this
//! test mounts, so it needs root, as CI has): read-only at start, then
//! writable; filled by another program, then freed; unmounted under it.
//! Each stops recording with a reason in /api/status, capture goes on, and
//! recording comes back by itself; nothing is ever written to the empty
//! mount point a disk leaves behind.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(path.to_path_buf()))
    }

    fn remount(&self, options: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn record_state(server: &Server) -> serde_json::Value {
    server.status().await["record"].clone()
}

/// Waits until recording's state satisfies `pred` (at most 15 s: the disk
/// is looked at every 5 s).
async fn wait_record(
    server: &Server,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let r = record_state(server).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < until, "{what}: {r}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn captured(server: &Server) -> u64 {
    let m = server.https("GET", "/metrics", None, b"").await.body;
    m.lines()
        .find_map(|l| l.strip_prefix("rtcam_frames_captured_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn media_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(".mp4"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_a_full_and_an_unmounted_disk_stop_recording_with_a_reason() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("NOT RUN: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let mnt = std::env::temp_dir().join(format!("rtcam-disk-{}", std::process::id()));
    let disk = Tmpfs::mount(&mnt, "size=16m,ro").expect("mount a tmpfs");
    let m = mnt.display().to_string();
    let server = Server::start(&[
        "--record",
        "continuous",
        "--record-dir",
        &m,
        "--record-segment",
        "2",
        "--size",
        "640x360",
    ]);

    // Read-only: the first clip cannot be made.
    let r = wait_record(&server, "read-only", |r| r["disk"] == "read-only").await;
    assert_eq!(r["state"], "stopped");
    assert!(r["problem"].as_str().unwrap().contains("Read-only"), "{r}");
    disk.remount("rw");
    wait_record(&server, "writable again", |r| r["state"] == "recording").await;

    // Another program fills the disk.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![7u8; 1 << 20];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let r = wait_record(&server, "full", |r| r["disk"] == "full").await;
    assert_eq!(r["state"], "stopped");
    // Said by the free-space check ("no room: ... free") or, when a write
    // got there first, by the write itself ("No space left on device").
    let problem = r["problem"].as_str().unwrap();
    assert!(
        problem.contains("free") || problem.contains("No space left"),
        "{r}"
    );
    let before = captured(&server).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(captured(&server).await > before + 10, "capture goes on");
    std::fs::remove_file(&filler).unwrap();
    wait_record(&server, "room again", |r| r["state"] == "recording").await;

    // The disk is unmounted under it: its mount point is left, empty, on
    // this machine's own disk, and must stay empty.
    drop(disk);
    let r = wait_record(&server, "gone", |r| r["disk"] == "gone").await;
    assert!(r["problem"].as_str().unwrap().contains("unmounted"), "{r}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(media_files(&mnt), 0, "nothing written where the disk was");
    assert_eq!(record_state(&server).await["state"], "stopped");
    drop(server);
    let _ = std::fs::remove_dir_all(&mnt);
}
