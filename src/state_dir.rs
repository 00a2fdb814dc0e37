//! The private files of the state dir (certificate and key, password hash,
//! tokens): the directory owner-only, each file written whole or not at all.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Makes the state dir owner-only (0700) when it does not exist. An existing
/// one that others may read is refused, never silently tightened: whoever
/// made it so may have meant it, and the secrets must not land there.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        ))),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the state dir {} is open to other users (mode {:04o}); it holds the password hash and \
                     the TLS key: make it private (chmod 700 {}) or give another --state-dir",
                dir.display(),
                meta.permissions().mode() & 0o7777,
                dir.display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        Err(e) => Err(e),
    }
}

/// Writes a file only its owner can read, atomically: a temporary file
/// beside it, synced, renamed over it, and the directory synced, so a power
/// cut leaves the old file or the new one, never half of one.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    // `sudo rtcam passwd` writes into the service's state directory, which
    // belongs to the service's (dynamic) user: the file must stay readable
    // by that user, so it takes the directory's owner.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root && let Some(dir) = dir {
        let owner = std::fs::metadata(dir)?;
        if owner.uid() != 0 {
            std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))?;
        }
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = dir {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rtcam-state-{name}-{}-{}",
            std::process::id(),
            crate::auth::random_hex(4)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_state_dir_is_private() {
        let dir = scratch("new").join("nested");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        ensure_private_dir(&dir).unwrap();
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_open_state_dir_is_refused_and_left_as_it_was() {
        let dir = scratch("open");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("mode 0755"), "{err}");
        assert!(err.to_string().contains("chmod 700"), "{err}");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "not chmodded behind the owner's back");
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(ensure_private_dir(&file).is_err(), "a file is not a dir");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_private_file_replaces_the_old_one_whole() {
        let dir = scratch("file");
        ensure_private_dir(&dir).unwrap();
        let path = dir.join("secret");
        write_private(&path, b"first").unwrap();
        write_private(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            !path.with_extension("tmp").exists(),
            "no temporary left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
