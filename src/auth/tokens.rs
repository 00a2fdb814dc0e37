//! WHEP bearer tokens: named, random, stored as SHA-256 digests in
//! `<state-dir>/tokens` (one `name digest` per line, mode 0600; a third
//! word `control` lets the token's players change the camera's settings,
//! else they may only watch).
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
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    digest: String,
    /// Its players may set the camera's controls.
    control: bool,
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
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let (name, digest) = (words.next()?, words.next()?);
                let control = words.next() == Some("control");
                (valid_name(name) && digest.len() == 64).then(|| Entry {
                    name: name.into(),
                    digest: digest.into(),
                    control,
                })
            })
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
            .map(|e| {
                let control = if e.control { " control" } else { "" };
                format!("{} {}{control}\n", e.name, e.digest)
            })
            .collect();
        crate::state_dir::write_private(&self.path, text.as_bytes())
            .map_err(|e| TokenError::Write(self.path.clone(), e))?;
        self.loaded = None;
        Ok(())
    }

    /// Creates a token and returns it: the only time it is ever shown.
    /// With `control`, its players may change the camera's settings.
    pub fn create(&mut self, name: &str, control: bool) -> Result<String, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::BadName(name.chars().take(80).collect()));
        }
        self.refresh()?;
        if self.entries.iter().any(|e| e.name == name) {
            return Err(TokenError::Exists(name.into()));
        }
        let token = super::random_hex(32);
        self.entries.push(Entry {
            name: name.into(),
            digest: super::sha256_hex(&token),
            control,
        });
        self.save()?;
        Ok(token)
    }

    pub fn revoke(&mut self, name: &str) -> Result<(), TokenError> {
        self.refresh()?;
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        if self.entries.len() == before {
            return Err(TokenError::Unknown(name.into()));
        }
        self.save()
    }

    pub fn names(&mut self) -> Result<Vec<String>, TokenError> {
        self.refresh()?;
        Ok(self.entries.iter().map(|e| e.name.clone()).collect())
    }

    /// Every token's name, and whether it may change the camera.
    pub fn list(&mut self) -> Result<Vec<(String, bool)>, TokenError> {
        self.refresh()?;
        Ok(self
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.control))
            .collect())
    }

    /// Whether the token `name` may change the camera's settings.
    pub fn may_control(&mut self, name: &str) -> bool {
        if let Err(e) = self.refresh() {
            tracing::warn!("tokens: {e}");
        }
        self.entries.iter().any(|e| e.name == name && e.control)
    }

    /// The name of the token presented, if it is valid.
    pub fn check(&mut self, token: &str) -> Option<String> {
        if let Err(e) = self.refresh() {
            tracing::warn!("tokens: {e}");
        }
        let digest = super::sha256_hex(token);
        self.entries
            .iter()
            .find(|e| super::same_digest(&e.digest, &digest))
            .map(|e| e.name.clone())
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
        let t = cli.create("player-1", false).unwrap();
        assert_eq!(t.len(), 64);
        let stored = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert!(!stored.contains(&t), "only the digest is stored");
        assert_eq!(server.check(&t).as_deref(), Some("player-1"));
        assert!(matches!(
            cli.create("player-1", true),
            Err(TokenError::Exists(_))
        ));
        assert!(!server.may_control("player-1"), "watch only");
        cli.create("operator", true).unwrap();
        assert!(server.may_control("operator"));
        assert!(matches!(
            cli.create("bad name", false),
            Err(TokenError::BadName(_))
        ));
        assert!(matches!(cli.create("", false), Err(TokenError::BadName(_))));
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
