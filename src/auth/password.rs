//! The owner's password, stored only as an Argon2id hash (PHC string) in
//! `<state-dir>/password`, mode 0600.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use thiserror::Error;

const FILE: &str = "password";
/// OWASP's Argon2id setting for small machines: 7 MiB, 5 passes. A login
/// costs tens of milliseconds on a Pi, and little memory.
const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;
pub const MIN_LEN: usize = 8;
/// Unambiguous characters for generated passwords (no 0/O, 1/l/I).
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

#[derive(Debug, Error)]
pub enum PasswordError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{0} does not hold a valid password hash")]
    Corrupt(PathBuf),
    #[error("the password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("hashing failed: {0}")]
    Hash(String),
}

#[derive(Debug, Clone)]
pub struct PasswordFile {
    hash: String,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// A new random password: 20 characters, about 99 bits.
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..20)
        .map(|i| {
            let c = ALPHABET[rng.random_range(0..ALPHABET.len())] as char;
            if i > 0 && i % 5 == 0 {
                format!("-{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl PasswordFile {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// Loads the stored hash.
    pub fn load(state_dir: &Path) -> Result<PasswordFile, PasswordError> {
        let path = Self::path(state_dir);
        let text =
            std::fs::read_to_string(&path).map_err(|e| PasswordError::Read(path.clone(), e))?;
        let hash = text.trim().to_string();
        PasswordHash::new(&hash).map_err(|_| PasswordError::Corrupt(path))?;
        Ok(PasswordFile { hash })
    }

    /// Loads the stored hash, or on first start makes a password, stores its
    /// hash and returns it (to be shown once).
    pub fn load_or_create(
        state_dir: &Path,
    ) -> Result<(PasswordFile, Option<String>), PasswordError> {
        let path = Self::path(state_dir);
        match std::fs::metadata(&path) {
            Ok(_) => Ok((Self::load(state_dir)?, None)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let password = generate();
                let file = Self::set(state_dir, &password)?;
                Ok((file, Some(password)))
            }
            Err(e) => Err(PasswordError::Read(path, e)),
        }
    }

    /// Replaces the password.
    pub fn set(state_dir: &Path, password: &str) -> Result<PasswordFile, PasswordError> {
        if password.chars().count() < MIN_LEN {
            return Err(PasswordError::TooShort);
        }
        let path = Self::path(state_dir);
        crate::state_dir::ensure_private_dir(state_dir)
            .map_err(|e| PasswordError::Write(path.clone(), e))?;
        let hash = hash(password)?;
        crate::state_dir::write_private(&path, format!("{hash}\n").as_bytes())
            .map_err(|e| PasswordError::Write(path, e))?;
        Ok(PasswordFile { hash })
    }

    /// Checks a password (slow on purpose: call it off the async runtime).
    pub fn verify(&self, password: &str) -> bool {
        match PasswordHash::new(&self.hash) {
            Ok(parsed) => argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_makes_a_password_and_stores_only_its_hash() {
        let dir = std::env::temp_dir().join(format!("rtcam-pw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (file, shown) = PasswordFile::load_or_create(&dir).unwrap();
        let password = shown.expect("generated on first start");
        assert_eq!(password.len(), 23);
        let stored = std::fs::read_to_string(PasswordFile::path(&dir)).unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains(&password));
        let mode = std::fs::metadata(PasswordFile::path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(file.verify(&password));
        assert!(!file.verify("wrong password"));
        // Second start: nothing shown, same password.
        let (again, shown) = PasswordFile::load_or_create(&dir).unwrap();
        assert!(shown.is_none());
        assert!(again.verify(&password));
        let changed = PasswordFile::set(&dir, "correct horse battery").unwrap();
        assert!(changed.verify("correct horse battery"));
        assert!(!changed.verify(&password));
        assert!(matches!(
            PasswordFile::set(&dir, "short"),
            Err(PasswordError::TooShort)
        ));
        std::fs::write(PasswordFile::path(&dir), "garbage").unwrap();
        assert!(matches!(
            PasswordFile::load_or_create(&dir),
            Err(PasswordError::Corrupt(_))
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
