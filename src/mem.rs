//! Handing freed heap back to the system.
//!
//! glibc keeps freed memory in its heap for the next allocation, and with
//! one arena (main.rs) the top of the heap only shrinks when the very last
//! block there is freed. A big transient user (the start-up probe
//! encoders, an encoder whose last viewer left: about 16 MB at 720p) would
//! otherwise stay in the process's RSS for good although nothing uses it.

/// Returns the heap's free memory to the system. A few milliseconds at
/// most; call it after a large owner was dropped, not per frame.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only returns free heap memory to the system.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!("malloc_trim: memory released: {}", released != 0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn giving_back_leaves_live_memory_alone() {
        let kept = vec![7u8; 1 << 20];
        drop(vec![1u8; 8 << 20]);
        super::give_back();
        assert!(kept.iter().all(|&b| b == 7));
    }
}
