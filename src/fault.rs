//! Faults the tests inject, in debug builds only: `RTCAM_FAULT=NAME[,NAME]`
//! arms them (e.g. `media-task-panic`). A release build has none.

/// Whether the fault `name` is armed.
pub fn armed(name: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var("RTCAM_FAULT").is_ok_and(|v| v.split(',').any(|f| f.trim() == name))
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}
