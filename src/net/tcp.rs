//! Socket options a TCP connection's owner sets after the fact: how much a
//! peer that stops reading can leave queued in the kernel for it.

use std::os::fd::RawFd;

/// Bounds the kernel's send buffer of `fd` (the kernel doubles it for its
/// bookkeeping). Autotuning grows it to megabytes for a fast reader; for
/// a socket that carries small messages, a peer that stops reading would
/// hold that much of the board's memory.
pub fn limit_send_buffer(fd: RawFd, bytes: i32) -> std::io::Result<()> {
    set(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &bytes)
}

/// Makes closing `fd` drop whatever is still queued (a reset) instead of
/// lingering for minutes to deliver it to a peer that does not read.
pub fn discard_on_close(fd: RawFd) -> std::io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set(fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger)
}

fn set<T>(fd: RawFd, level: i32, name: i32, value: &T) -> std::io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points to a live `T` of `len` bytes for the call; a
    // closed or foreign `fd` makes setsockopt fail with EBADF or ENOTSOCK.
    let rc = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn get(fd: RawFd, name: i32) -> i32 {
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: v and len are live for the call.
        let rc =
            unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&raw mut v).cast(), &mut len) };
        assert_eq!(rc, 0);
        v
    }

    #[test]
    fn the_options_take() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        limit_send_buffer(s.as_raw_fd(), 32 * 1024).unwrap();
        assert_eq!(get(s.as_raw_fd(), libc::SO_SNDBUF), 64 * 1024, "doubled");
        discard_on_close(s.as_raw_fd()).unwrap();
        assert!(limit_send_buffer(-1, 1).is_err());
    }
}
