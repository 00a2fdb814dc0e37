//! Which clips go, sans-IO: the clips on disk, the file system's space and
//! the owner's limits in; what to delete, and whether there is room to go
//! on, out. The oldest go first; the clip being written never goes.

use std::time::Duration;

use super::ClipId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: ClipId,
    pub start_ms: u64,
    pub bytes: u64,
    /// Being written now.
    pub open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub free: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The clips' total size at most.
    pub max_size: u64,
    pub max_age: Option<Duration>,
    /// Free space never taken.
    pub min_free: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub delete: Vec<ClipId>,
    /// After the deletions, `headroom` more bytes fit above the floor and
    /// under the size cap.
    pub room: bool,
}

/// The plan for `clips` when `headroom` bytes are about to be written.
pub fn plan(clips: &[Stored], space: Space, limits: &Limits, now_ms: u64, headroom: u64) -> Plan {
    let mut kept: Vec<&Stored> = clips.iter().collect();
    kept.sort_by_key(|c| (c.start_ms, c.id.clone()));
    let mut delete = Vec::new();
    let mut free = space.free;
    let mut used: u64 = kept.iter().map(|c| c.bytes).sum();
    let too_old = |c: &Stored| {
        limits
            .max_age
            .is_some_and(|age| now_ms.saturating_sub(c.start_ms) > age.as_millis() as u64)
    };
    let over = |used: u64, free: u64| {
        used + headroom > limits.max_size || free < limits.min_free + headroom
    };
    loop {
        let next = match kept.iter().position(|c| !c.open && too_old(c)) {
            Some(i) => Some(i),
            None if over(used, free) => kept.iter().position(|c| !c.open),
            None => None,
        };
        let Some(i) = next else { break };
        let c = kept.remove(i);
        free += c.bytes;
        used -= c.bytes;
        delete.push(c.id.clone());
    }
    Plan {
        room: !over(used, free),
        delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Trigger;

    const MB: u64 = 1 << 20;
    const DAY: u64 = 86_400_000;

    fn clip(day: u64, bytes: u64) -> Stored {
        Stored {
            id: ClipId::new(1_796_000_000_000 + day * DAY, Trigger::Motion, 0),
            start_ms: 1_796_000_000_000 + day * DAY,
            bytes,
            open: false,
        }
    }

    fn limits(max_size: u64, min_free: u64) -> Limits {
        Limits {
            max_size,
            max_age: None,
            min_free,
        }
    }

    #[test]
    fn the_size_cap_takes_the_oldest_first() {
        let clips: Vec<_> = (0..10).map(|d| clip(d, 100 * MB)).collect();
        let space = Space {
            free: 10_000 * MB,
            total: 32_000 * MB,
        };
        let p = plan(
            &clips,
            space,
            &limits(800 * MB, 0),
            clips[9].start_ms,
            50 * MB,
        );
        // 1000 MB + 50 of headroom under 800: three go, the oldest.
        assert_eq!(
            p.delete,
            vec![
                clips[0].id.clone(),
                clips[1].id.clone(),
                clips[2].id.clone()
            ]
        );
        assert!(p.room);
    }

    #[test]
    fn age_goes_first_and_the_open_clip_never() {
        let mut clips: Vec<_> = (0..5).map(|d| clip(d, MB)).collect();
        clips[0].open = true;
        let now = clips[4].start_ms;
        let l = Limits {
            max_age: Some(Duration::from_secs(2 * 86_400)),
            ..limits(u64::MAX / 2, 0)
        };
        let space = Space {
            free: 1 << 40,
            total: 1 << 41,
        };
        let p = plan(&clips, space, &l, now, 0);
        assert_eq!(
            p.delete,
            vec![clips[1].id.clone()],
            "day 0 is open, 1 too old, 2 is exactly 2 days"
        );
    }

    #[test]
    fn the_free_space_floor_is_never_crossed() {
        let clips: Vec<_> = (0..4).map(|d| clip(d, 10 * MB)).collect();
        // Another program filled the disk: 5 MB free, floor 20 MB.
        let space = Space {
            free: 5 * MB,
            total: 1000 * MB,
        };
        let p = plan(&clips, space, &limits(u64::MAX / 2, 20 * MB), 0, 2 * MB);
        assert_eq!(p.delete.len(), 2, "5 + 20 = 25 >= 22");
        assert!(p.room);
        // Nothing of ours left to free: no room, recording stops.
        let p = plan(&[], space, &limits(u64::MAX / 2, 20 * MB), 0, 2 * MB);
        assert!(!p.room);
        assert!(p.delete.is_empty());
    }
}
