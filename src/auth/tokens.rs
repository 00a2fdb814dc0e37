//! WHEP bearer tokens: named, random, stored as SHA-256 digests in
//! `<state-dir>/tokens` (one `name digest` per line, mode 0600).
//!
//! The running appliance re-reads the file when it changes, so
//! `rtcam token create` and `revoke` take effect without a restart.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;

const FILE: &str = "tokens";

#[derive(Debug, Error)]
pub enum TokenError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("a token name is 1 to 64 letters, digits, '-', '_' or '.', not '{0}'")]
    BadName(String),
    #[error("a token named '{0}' exists already (revoke it first)")]
    Exists(String),
    #[error("no token named '{0}'")]
    Unknown(String),
}

#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    /// Modification time and length of the file as last read.
    loaded: Option<(SystemTime, u64)>,
    entries: Vec<(String, String)>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl TokenStore {
    pub fn open(state_dir: &Path) -> TokenStore {
        TokenStore {
            path: state_dir.join(FILE),
            loaded: None,
            entries: Vec::new(),
        }
    }

    /// Re-reads the file if it changed since the last look.
    fn refresh(&mut self) -> Result<(), TokenError> {
        let modified = match std::fs::metadata(&self.path) {
            Ok(m) => m.modified().ok().map(|t| (t, m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.entries.clear();
                self.loaded = None;
                return Ok(());
            }
            Err(e) => return Err(TokenError::Read(self.path.clone(), e)),
        };
        if modified.is_some() && modified == self.loaded {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| TokenError::Read(self.path.clone(), e))?;
        self.entries = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, d)| (n.trim().to_string(), d.trim().to_string()))
            .filter(|(n, d)| valid_name(n) && d.len() == 64)
            .collect();
        self.loaded = modified;
        Ok(())
    }

    fn save(&mut self) -> Result<(), TokenError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::state_dir::ensure_private_dir(dir)
            .map_err(|e| TokenError::Write(self.path.clone(), e))?;
        let text: String = self
            .entries
            .iter()
            .map(|(n, d)| format!("{n} {d}\n"))
            .collect();
        crate::state_dir::write_private(&self.path, text.as_bytes())
            .map_err(|e| TokenError::Write(self.path.clone(), e))?;
        self.loaded = None;
        Ok(())
    }

    /// Creates a token and returns it: the only time it is ever shown.
    pub fn create(&mut self, name: &str) -> Result<String, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::BadName(name.chars().take(80).collect()));
        }
        self.refresh()?;
        if self.entries.iter().any(|(n, _)| n == name) {
            return Err(TokenError::Exists(name.into()));
        }
        let token = super::random_hex(32);
        self.entries.push((name.into(), super::sha256_hex(&token)));
        self.save()?;
        Ok(token)
    }

    pub fn revoke(&mut self, name: &str) -> Result<(), TokenError> {
        self.refresh()?;
        let before = self.entries.len();
        self.entries.retain(|(n, _)| n != name);
        if self.entries.len() == before {
            return Err(TokenError::Unknown(name.into()));
        }
        self.save()
    }

    pub fn names(&mut self) -> Result<Vec<String>, TokenError> {
        self.refresh()?;
        Ok(self.entries.iter().map(|(n, _)| n.clone()).collect())
    }

    /// The name of the token presented, if it is valid.
    pub fn check(&mut self, token: &str) -> Option<String> {
        if let Err(e) = self.refresh() {
            tracing::warn!("tokens: {e}");
        }
        let digest = super::sha256_hex(token);
        self.entries
            .iter()
            .find(|(_, d)| super::same_digest(d, &digest))
            .map(|(n, _)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_check_revoke_across_two_handles() {
        let dir = std::env::temp_dir().join(format!("rtcam-tok-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cli = TokenStore::open(&dir);
        let mut server = TokenStore::open(&dir);
        assert_eq!(server.check("nothing"), None);
        let t = cli.create("player-1").unwrap();
        assert_eq!(t.len(), 64);
        let stored = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert!(!stored.contains(&t), "only the digest is stored");
        assert_eq!(server.check(&t).as_deref(), Some("player-1"));
        assert!(matches!(cli.create("player-1"), Err(TokenError::Exists(_))));
        assert!(matches!(
            cli.create("bad name"),
            Err(TokenError::BadName(_))
        ));
        assert!(matches!(cli.create(""), Err(TokenError::BadName(_))));
        // Make sure the file's mtime moves on filesystems with coarse clocks.
        std::thread::sleep(std::time::Duration::from_millis(20));
        cli.revoke("player-1").unwrap();
        assert_eq!(server.check(&t), None, "revocation takes effect live");
        assert!(matches!(
            cli.revoke("player-1"),
            Err(TokenError::Unknown(_))
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
