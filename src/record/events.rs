//! The motion events of late, for the page (`/api/events`) and the
//! metrics: each with its start, end, size and a small snapshot taken at
//! its start, kept in RAM (at most [`KEPT`], a few KB each).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::ClipId;

/// Events kept.
pub const KEPT: usize = 100;

/// What viewers are told of an event (on the `rtcam` channel) and the hook
/// is given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MotionNotice {
    pub id: u64,
    /// "started" or "ended".
    pub state: &'static str,
    /// Wall-clock time, Unix ms.
    pub at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lasted_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub id: u64,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub area: f32,
    pub snapshot: Option<String>,
    pub clip: Option<String>,
}

#[derive(Debug)]
struct Event {
    view: EventView,
    jpeg: Option<Arc<[u8]>>,
}

#[derive(Debug, Default)]
struct Inner {
    events: VecDeque<Event>,
    next: u64,
    started: u64,
    ended: u64,
}

/// Shared between the motion thread (writes), the recorder (names the
/// clip) and the HTTP plane (reads).
#[derive(Debug, Clone, Default)]
pub struct EventBoard(Arc<Mutex<Inner>>);

impl EventBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new event; returns what viewers are told.
    pub fn started(&self, at_ms: u64, area: f32, jpeg: Option<Vec<u8>>) -> MotionNotice {
        let mut inner = self.lock();
        inner.next += 1;
        inner.started += 1;
        let id = inner.next;
        let snapshot = jpeg.as_ref().map(|_| format!("/api/events/{id}.jpg"));
        if inner.events.len() == KEPT {
            inner.events.pop_back();
        }
        inner.events.push_front(Event {
            view: EventView {
                id,
                started_ms: at_ms,
                ended_ms: None,
                area,
                snapshot: snapshot.clone(),
                clip: None,
            },
            jpeg: jpeg.map(Arc::from),
        });
        MotionNotice {
            id,
            state: "started",
            at: at_ms,
            area: Some(area),
            lasted_ms: None,
            snapshot,
        }
    }

    /// The newest event ended.
    pub fn ended(&self, at_ms: u64, lasted_ms: u64) -> Option<MotionNotice> {
        let mut inner = self.lock();
        inner.ended += 1;
        let e = inner.events.front_mut()?;
        e.view.ended_ms = Some(at_ms);
        Some(MotionNotice {
            id: e.view.id,
            state: "ended",
            at: at_ms,
            area: None,
            lasted_ms: Some(lasted_ms),
            snapshot: None,
        })
    }

    /// The recorder opened `clip` while the newest event goes on.
    pub fn recorded(&self, clip: &ClipId) {
        if let Some(e) = self.lock().events.front_mut()
            && e.view.clip.is_none()
        {
            e.view.clip = Some(clip.to_string());
        }
    }

    pub fn list(&self) -> Vec<EventView> {
        self.lock().events.iter().map(|e| e.view.clone()).collect()
    }

    pub fn snapshot(&self, id: u64) -> Option<Arc<[u8]>> {
        let inner = self.lock();
        inner.events.iter().find(|e| e.view.id == id)?.jpeg.clone()
    }

    /// Events started and ended so far.
    pub fn counts(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.started, inner.ended)
    }

    /// The thumbnail of the newest event, for a clip it starts.
    pub fn newest_snapshot(&self) -> Option<Arc<[u8]>> {
        let inner = self.lock();
        inner
            .events
            .front()
            .filter(|e| e.view.ended_ms.is_none())?
            .jpeg
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_kept_newest_first_and_bounded() {
        let board = EventBoard::default();
        for i in 0..(KEPT as u64 + 5) {
            let n = board.started(i * 1000, 0.1, Some(vec![1, 2, 3]));
            assert_eq!(
                n.snapshot.as_deref(),
                Some(format!("/api/events/{}.jpg", i + 1).as_str())
            );
            board.ended(i * 1000 + 500, 500);
        }
        let list = board.list();
        assert_eq!(list.len(), KEPT);
        assert_eq!(list[0].id, KEPT as u64 + 5);
        assert_eq!(list[0].ended_ms, Some((KEPT as u64 + 4) * 1000 + 500));
        assert!(board.snapshot(1).is_none(), "the oldest went");
        assert_eq!(
            board.snapshot(KEPT as u64 + 5).as_deref(),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(board.counts(), (KEPT as u64 + 5, KEPT as u64 + 5));
    }
}
