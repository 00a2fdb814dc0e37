//! Who may watch: the owner's password (for the page), login sessions
//! (cookies), WHEP bearer tokens, and backoff for failed logins.
//!
//! Everything here is sans-IO except the two small files in the state dir
//! (`password`, `tokens`): time comes in as an argument, so expiry and
//! backoff are tested without sleeping.

pub mod backoff;
pub mod logins;
pub mod password;
pub mod queue;
pub mod tokens;

use aws_lc_rs::digest;
use rand::Rng;

pub use backoff::LoginBackoff;
pub use logins::Logins;
pub use password::PasswordFile;
pub use queue::{CheckQueue, QueueRefusal, Standing};
pub use tokens::TokenStore;

/// A fresh random secret as lowercase hex (`bytes` of entropy).
pub fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// SHA-256 of a high-entropy secret, as hex: what we store instead of it.
pub fn sha256_hex(secret: &str) -> String {
    digest::digest(&digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two secrets' digests in constant time.
pub fn same_digest(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_digests_stable() {
        let a = random_hex(32);
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_hex(32));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same_digest(&sha256_hex("x"), &sha256_hex("x")));
        assert!(!same_digest(&sha256_hex("x"), &sha256_hex("y")));
    }

    #[test]
    fn root_writes_into_a_service_directory_as_its_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("rtcam-owner-{}", random_hex(6)));
        crate::state_dir::ensure_private_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(61234), Some(61235)).unwrap();
        let file = dir.join("secret");
        crate::state_dir::write_private(&file, b"x").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (61234, 61235));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
