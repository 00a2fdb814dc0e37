//! What recording is doing, for `/api/status`, `/api/recordings` and
//! `/metrics`: the disk's state and why, the space, and the bytes written
//! with the wear they project on the card.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::RecordMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskState {
    Ready,
    /// Below the free-space floor with nothing of ours left to delete.
    Full,
    ReadOnly,
    /// The folder is not there (a USB disk pulled out or not mounted).
    Gone,
    /// Writes take so long that the queue to the disk filled up.
    Stalled,
    Failed,
}

#[derive(Debug, Clone)]
pub struct Inner {
    pub mode: RecordMode,
    pub disk: DiskState,
    pub problem: Option<String>,
    /// Bytes written since start.
    pub written: u64,
    pub started: Instant,
    pub max_size: u64,
    pub min_free: u64,
    pub free: u64,
    pub total: u64,
    /// Our clips' bytes.
    pub used: u64,
    /// Clips deleted by retention.
    pub deleted: u64,
    /// The clip being written.
    pub current: Option<String>,
    /// Fragments (or frames) dropped because the disk was behind.
    pub dropped: u64,
    pub endurance_tbw: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct RecordStatus(Arc<Mutex<Inner>>);

/// The status as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub mode: RecordMode,
    /// off, idle, recording or stopped.
    pub state: &'static str,
    pub disk: DiskState,
    pub problem: Option<String>,
    pub current: Option<String>,
    pub written_bytes: u64,
    pub bytes_per_day: u64,
    pub used_bytes: u64,
    pub max_bytes: u64,
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    pub deleted: u64,
    pub dropped: u64,
    pub endurance_tbw: Option<f64>,
    /// Of the card's endurance, per year at this rate.
    pub wear_percent_per_year: Option<f64>,
}

impl Serialize for RecordMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl RecordStatus {
    pub fn new(mode: RecordMode, endurance_tbw: Option<f64>) -> Self {
        RecordStatus(Arc::new(Mutex::new(Inner {
            mode,
            disk: DiskState::Ready,
            problem: None,
            written: 0,
            started: Instant::now(),
            max_size: 0,
            min_free: 0,
            free: 0,
            total: 0,
            used: 0,
            deleted: 0,
            current: None,
            dropped: 0,
            endurance_tbw,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn update(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
    }

    pub fn get(&self) -> Inner {
        self.lock().clone()
    }

    /// The disk's state alone (the recorder thread asks on every unit).
    pub fn disk(&self) -> DiskState {
        self.lock().disk
    }

    /// The disk takes writes again; true when that is news (logged once).
    pub fn disk_ready(&self) -> bool {
        let mut s = self.lock();
        let was = s.disk;
        s.disk = DiskState::Ready;
        s.problem = None;
        if was != DiskState::Ready {
            tracing::info!("recording: the disk takes writes again");
        }
        was != DiskState::Ready
    }

    /// The disk stopped taking writes; true when that is news.
    pub fn disk_unavailable(&self, state: DiskState, problem: &str) -> bool {
        let mut s = self.lock();
        let news = s.disk != state;
        s.disk = state;
        s.problem = Some(problem.to_string());
        news
    }

    pub fn view(&self) -> StatusView {
        let s = self.lock();
        let days = s.started.elapsed().as_secs_f64().max(60.0) / 86_400.0;
        let per_day = (s.written as f64 / days) as u64;
        let state = match (s.mode, s.disk, &s.current) {
            (RecordMode::Off, ..) => "off",
            (_, DiskState::Ready, Some(_)) => "recording",
            (_, DiskState::Ready, None) => "idle",
            _ => "stopped",
        };
        StatusView {
            mode: s.mode,
            state,
            disk: s.disk,
            problem: s.problem.clone(),
            current: s.current.clone(),
            written_bytes: s.written,
            bytes_per_day: per_day,
            used_bytes: s.used,
            max_bytes: s.max_size,
            free_bytes: s.free,
            min_free_bytes: s.min_free,
            deleted: s.deleted,
            dropped: s.dropped,
            endurance_tbw: s.endurance_tbw,
            wear_percent_per_year: s
                .endurance_tbw
                .filter(|t| *t > 0.0)
                .map(|tbw| per_day as f64 * 365.0 / (tbw * 1e12) * 100.0),
        }
    }
}
