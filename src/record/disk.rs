//! The disk thread: the only place recordings touch the file system.
//!
//! A segment is written as `ID.mp4.part` (init segment, then one fragment
//! per write, each synced), renamed to `ID.mp4` when whole; `ID.json`
//! says when it started, why and (once closed) how long it is; `ID.jpg` is
//! its thumbnail. After a power cut, the `.part` left behind is cut back to
//! its last whole fragment at the next start. Before each new segment, and
//! every [`CHECK_EVERY`] while writing, retention (`retention.rs`) makes
//! room, and a disk below its free-space floor stops recording.
//!
//! A disk that fails (full, read-only, gone) stops recording with a reason
//! in the status and the log; it is looked at again every
//! [`CHECK_EVERY`], and recording goes on by itself when it is back.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::retention::{self, Limits, Space, Stored};
use super::status::{DiskState, RecordStatus};
use super::{ClipId, Trigger};

pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// What the recorder thread hands the disk thread.
#[derive(Debug)]
pub enum DiskOp {
    Open {
        id: ClipId,
        trigger: Trigger,
        start_ms: u64,
        init: Vec<u8>,
        thumbnail: Option<Arc<[u8]>>,
    },
    Append {
        id: ClipId,
        bytes: Vec<u8>,
    },
    Close {
        id: ClipId,
        duration: Duration,
    },
}

/// `ID.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sidecar {
    pub start_ms: u64,
    pub trigger: String,
    pub duration_ms: Option<u64>,
    /// Cut back after a power cut or a failed disk.
    #[serde(default)]
    pub interrupted: bool,
}

/// One clip on disk, for the API and retention.
#[derive(Debug, Clone, Serialize)]
pub struct ClipInfo {
    pub id: String,
    pub start_ms: u64,
    pub duration_ms: Option<u64>,
    pub size: u64,
    pub trigger: String,
    pub thumbnail: Option<String>,
    pub recording: bool,
    pub interrupted: bool,
}

/// The owner's limits before the file system is measured.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub max_size: Option<u64>,
    pub max_age: Option<Duration>,
    pub min_free: Option<u64>,
}

pub struct DiskThread {
    pub dir: PathBuf,
    pub wanted: Wanted,
    pub status: RecordStatus,
    pub ops: Receiver<DiskOp>,
    /// Ops sent and not yet done (the recorder thread counts up).
    pub queued: Arc<AtomicUsize>,
}

struct Open {
    id: ClipId,
    file: File,
    /// Bytes whole on disk (the init segment and whole fragments).
    good: u64,
    sidecar: Sidecar,
}

impl DiskThread {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("record-disk".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        recover(&self.dir);
        let limits = self.limits();
        self.status.update(|s| {
            s.max_size = limits.max_size;
            s.min_free = limits.min_free;
        });
        let mut open: Option<Open> = None;
        let mut checked = Instant::now();
        // The file system the folder is on at start: a disk unmounted
        // under it leaves the mount point, on the card (see `check`).
        let mut device = device_of(&self.dir);
        self.check(&limits, None, &mut device);
        loop {
            let op = match self.ops.recv_timeout(CHECK_EVERY) {
                Ok(op) => Some(op),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(op) = op {
                self.handle(op, &mut open, &limits, &mut device);
                self.queued.fetch_sub(1, Ordering::Relaxed);
            }
            if checked.elapsed() >= CHECK_EVERY {
                checked = Instant::now();
                if !self.check(&limits, open.as_ref().map(|o| &o.id), &mut device) {
                    self.abandon(&mut open);
                }
            }
        }
        if let Some(o) = open.take() {
            let _ = finish(&self.dir, o, None);
        }
    }

    /// The owner's limits, or the defaults measured now.
    fn limits(&self) -> Limits {
        let space = space_of(&self.dir).unwrap_or(Space { free: 0, total: 0 });
        let ours: u64 = list(&self.dir).iter().map(|c| c.size).sum();
        Limits {
            max_size: self.wanted.max_size.unwrap_or((space.free / 2) + ours),
            max_age: self.wanted.max_age,
            min_free: self
                .wanted
                .min_free
                .unwrap_or((space.total / 20).min(1 << 30)),
        }
    }

    /// What a segment may need before the next check: an eighth of the
    /// size cap, between 1 and 32 MB.
    fn headroom(limits: &Limits) -> u64 {
        (limits.max_size / 8).clamp(1 << 20, 32 << 20)
    }

    fn handle(
        &self,
        op: DiskOp,
        open: &mut Option<Open>,
        limits: &Limits,
        device: &mut Option<u64>,
    ) {
        match op {
            DiskOp::Open {
                id,
                trigger,
                start_ms,
                init,
                thumbnail,
            } => {
                self.abandon(open);
                if !self.check(limits, None, device) {
                    return;
                }
                let sidecar = Sidecar {
                    start_ms,
                    trigger: trigger.as_str().into(),
                    duration_ms: None,
                    interrupted: false,
                };
                match create(&self.dir, &id, &init, thumbnail.as_deref(), &sidecar) {
                    Ok((file, meta)) => {
                        self.written(init.len() + meta);
                        self.status.update(|s| s.current = Some(id.to_string()));
                        *open = Some(Open {
                            id,
                            file,
                            good: init.len() as u64,
                            sidecar,
                        });
                    }
                    Err(e) => self.failed(&e, "starting a clip"),
                }
            }
            DiskOp::Append { id, bytes } => {
                let Some(o) = open.as_mut().filter(|o| o.id == id) else {
                    return; // its Open failed, or the disk failed since
                };
                match append(&mut o.file, &bytes) {
                    Ok(()) => {
                        o.good += bytes.len() as u64;
                        self.written(bytes.len());
                    }
                    Err(e) => {
                        self.failed(&e, "writing a clip");
                        self.abandon(open);
                    }
                }
            }
            DiskOp::Close { id, duration } => {
                if let Some(o) = open.take_if(|o| o.id == id) {
                    match finish(&self.dir, o, Some(duration)) {
                        Ok(meta) => self.written(meta),
                        Err(e) => self.failed(&e, "closing a clip"),
                    }
                }
                self.status.update(|s| s.current = None);
            }
        }
    }

    /// The clip being written ends where it was last whole.
    fn abandon(&self, open: &mut Option<Open>) {
        if let Some(mut o) = open.take() {
            o.sidecar.interrupted = true;
            let _ = o.file.set_len(o.good);
            let _ = finish(&self.dir, o, None);
            self.status.update(|s| s.current = None);
        }
    }

    /// Makes room (retention) and says whether recording may go on.
    fn check(&self, limits: &Limits, current: Option<&ClipId>, device: &mut Option<u64>) -> bool {
        let Some(space) = space_of(&self.dir) else {
            self.unavailable(
                DiskState::Gone,
                format!("{} is not there", self.dir.display()),
            );
            return false;
        };
        // A USB disk unmounted (or never mounted) leaves its mount point,
        // an empty folder on the SD card: recording there would fill the
        // card. The folder must stay on the file system it was first on.
        let now = device_of(&self.dir);
        if device.is_none() {
            *device = now;
        }
        if now != *device {
            self.unavailable(
                DiskState::Gone,
                format!(
                    "{} is no longer on the disk it was on (was that disk unmounted?)",
                    self.dir.display()
                ),
            );
            return false;
        }
        let clips = list(&self.dir);
        let stored: Vec<Stored> = clips
            .iter()
            .filter_map(|c| {
                Some(Stored {
                    id: ClipId::parse(&c.id)?,
                    start_ms: c.start_ms,
                    bytes: c.size,
                    open: c.recording || current.is_some_and(|cur| cur.as_str() == c.id),
                })
            })
            .collect();
        let plan = retention::plan(&stored, space, limits, now_ms(), Self::headroom(limits));
        for id in &plan.delete {
            remove(&self.dir, id);
            tracing::info!("recording {id} deleted to keep within the limits");
        }
        let space = space_of(&self.dir).unwrap_or(space);
        let used: u64 = list(&self.dir).iter().map(|c| c.size).sum();
        self.status.update(|s| {
            s.free = space.free;
            s.total = space.total;
            s.used = used;
            s.deleted += plan.delete.len() as u64;
        });
        if !plan.room {
            self.unavailable(
                DiskState::Full,
                format!(
                    "no room: {} MB free (the floor is {} MB), {} MB of clips (at most {} MB)",
                    space.free >> 20,
                    limits.min_free >> 20,
                    used >> 20,
                    limits.max_size >> 20
                ),
            );
            return false;
        }
        if self.status.disk() != DiskState::Ready && !writable(&self.dir) {
            return false;
        }
        self.status.disk_ready();
        true
    }

    fn written(&self, n: usize) {
        self.status.update(|s| s.written += n as u64);
    }

    fn failed(&self, e: &std::io::Error, doing: &str) {
        let state = match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => DiskState::Full,
            Some(libc::EROFS) => DiskState::ReadOnly,
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) | Some(libc::EIO) => {
                DiskState::Gone
            }
            _ => DiskState::Failed,
        };
        self.unavailable(state, format!("{doing} in {}: {e}", self.dir.display()));
    }

    fn unavailable(&self, state: DiskState, problem: String) {
        if self.status.disk_unavailable(state, &problem) {
            tracing::error!(
                "recording stopped: {problem}; it goes on by itself when the disk is back"
            );
        }
    }
}

/// The device number of the file system `dir` is on.
fn device_of(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| m.dev())
}

/// A test write: whether files can be made in `dir` now.
fn writable(dir: &Path) -> bool {
    let probe = dir.join(".rtcam-probe");
    let ok = File::create(&probe)
        .and_then(|mut f| f.write_all(b"ok"))
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

fn create(
    dir: &Path,
    id: &ClipId,
    init: &[u8],
    thumb: Option<&[u8]>,
    side: &Sidecar,
) -> std::io::Result<(File, usize)> {
    let mut meta = 0;
    if let Some(jpeg) = thumb {
        std::fs::write(dir.join(format!("{id}.jpg")), jpeg)?;
        meta += jpeg.len();
    }
    meta += write_sidecar(dir, id, side)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(format!("{id}.mp4.part")))?;
    append(&mut file, init)?;
    Ok((file, meta))
}

fn append(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_data()
}

/// Writes `ID.json`; its size.
fn write_sidecar(dir: &Path, id: &ClipId, side: &Sidecar) -> std::io::Result<usize> {
    let json = serde_json::to_vec(side).unwrap_or_default();
    std::fs::write(dir.join(format!("{id}.json")), &json)?;
    Ok(json.len())
}

/// The segment is whole: its sidecar gets the duration, `.part` goes;
/// returns the sidecar's size.
fn finish(dir: &Path, mut o: Open, duration: Option<Duration>) -> std::io::Result<usize> {
    o.sidecar.duration_ms = duration.map(|d| d.as_millis() as u64);
    o.file.sync_all()?;
    drop(o.file);
    let meta = write_sidecar(dir, &o.id, &o.sidecar)?;
    std::fs::rename(
        dir.join(format!("{}.mp4.part", o.id)),
        dir.join(format!("{}.mp4", o.id)),
    )?;
    File::open(dir)?.sync_all()?;
    Ok(meta)
}

pub fn remove(dir: &Path, id: &ClipId) {
    for ext in ["mp4", "json", "jpg", "mp4.part"] {
        let _ = std::fs::remove_file(dir.join(format!("{id}.{ext}")));
    }
}

/// Every `.part` left by a power cut is cut back to its last whole
/// fragment and kept as an interrupted clip.
pub fn recover(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".mp4.part").and_then(ClipId::parse) else {
            continue;
        };
        let path = entry.path();
        let cut = whole_len(&path).unwrap_or(0);
        let kept = cut > 0
            && std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(cut).and_then(|()| f.sync_all()))
                .is_ok();
        if !kept {
            remove(dir, &id);
            continue;
        }
        let mut side = read_sidecar(dir, &id).unwrap_or(Sidecar {
            start_ms: 0,
            trigger: "motion".into(),
            duration_ms: None,
            interrupted: true,
        });
        side.interrupted = true;
        let _ = write_sidecar(dir, &id, &side);
        let _ = std::fs::rename(&path, dir.join(format!("{id}.mp4")));
        tracing::warn!(
            "recording {id} was cut short (a power cut or a crash): kept up to its last whole fragment ({cut} bytes)"
        );
    }
}

/// How much of a file is whole: the init segment and every fragment whose
/// mdat is complete (read box headers only, never the whole file); 0 when
/// not even one fragment is.
pub fn whole_len(path: &Path) -> std::io::Result<u64> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let (mut at, mut good, mut moov, mut moof) = (0u64, 0u64, false, false);
    let mut fragments = 0u32;
    let mut head = [0u8; 16];
    while at + 8 <= len {
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut head[..8])?;
        let mut size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        if size == 1 {
            f.read_exact(&mut head[8..16])?;
            size = u64::from_be_bytes(head[8..16].try_into().unwrap_or_default());
        }
        if size < 8 || at + size > len {
            break;
        }
        at += size;
        match &head[4..8] {
            b"moov" => {
                moov = true;
                good = at;
            }
            b"moof" => moof = true,
            b"mdat" if moov && moof => {
                moof = false;
                good = at;
                fragments += 1;
            }
            _ => {}
        }
    }
    // A file with no whole fragment has no picture: nothing to keep.
    Ok(if moov && fragments > 0 { good } else { 0 })
}

fn read_sidecar(dir: &Path, id: &ClipId) -> Option<Sidecar> {
    let bytes = std::fs::read(dir.join(format!("{id}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The clips in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<ClipInfo> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut clips: Vec<ClipInfo> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (id, recording) = match name.strip_suffix(".mp4.part") {
                Some(id) => (id.to_string(), true),
                None => (name.strip_suffix(".mp4")?.to_string(), false),
            };
            let id = ClipId::parse(&id)?;
            let size = e.metadata().ok()?.len();
            let side = read_sidecar(dir, &id);
            let thumbnail = dir
                .join(format!("{id}.jpg"))
                .exists()
                .then(|| format!("/api/recordings/{id}.jpg"));
            Some(ClipInfo {
                start_ms: side.as_ref().map_or(0, |s| s.start_ms),
                duration_ms: side.as_ref().and_then(|s| s.duration_ms),
                trigger: side
                    .as_ref()
                    .map_or_else(|| "motion".into(), |s| s.trigger.clone()),
                interrupted: side.as_ref().is_some_and(|s| s.interrupted),
                id: id.to_string(),
                size,
                thumbnail,
                recording,
            })
        })
        .collect();
    clips.sort_by(|a, b| (b.start_ms, &b.id).cmp(&(a.start_ms, &a.id)));
    clips
}

/// The file system's free and total bytes (what an unprivileged writer
/// may use), or `None` when `dir` is not there.
pub fn space_of(dir: &Path) -> Option<Space> {
    use std::os::unix::ffi::OsStrExt;
    if !dir.is_dir() {
        return None;
    }
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some(Space {
        free: st.f_bavail as u64 * unit,
        total: st.f_blocks as u64 * unit,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
