//! The anonymous identity token the bridge presents to the relay.
//!
//! A random 256-bit secret, created on first run and kept in the config directory with
//! owner-only permissions. The relay keys the participant by its hash, so a bridge that
//! reconnects (network blip, relay restart behind a load balancer) keeps its seat in the chat.
//! The token identifies nobody: it is not derived from anything about the user or the machine.
//!
//! Several bridges can run at once (two host windows, two hosts). Each must be its own
//! participant, so each holds a lock on one identity slot (`identity`, `identity-2`, ...): a
//! bridge takes the first free slot, and a restarted bridge gets its old slot back.

use std::io::Write;
use std::path::{Path, PathBuf};

use mcp_chat::protocol::{MAX_IDENTITY_TOKEN_CHARS, MIN_IDENTITY_TOKEN_CHARS};

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The operating system's random source failed.
    #[error("no randomness available: {0}")]
    Random(String),
    /// The identity file could not be read or written.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Most identity slots tried before falling back to an in-memory identity.
pub const MAX_SLOTS: u32 = 16;

/// An identity token, with the lock that keeps other bridges off its slot while it is alive.
#[derive(Debug)]
pub struct Identity {
    /// The secret sent in the identity header.
    pub token: String,
    /// The slot's file, or `None` for an in-memory identity.
    pub path: Option<PathBuf>,
    _lock: Option<std::fs::File>,
}

impl Identity {
    /// A fresh identity that lives only in memory.
    pub fn ephemeral() -> Result<Self, IdentityError> {
        Ok(Self {
            token: new_token()?,
            path: None,
            _lock: None,
        })
    }

    /// The stored identity of the first slot in `dir` that no other running bridge holds,
    /// created if needed. With every slot taken, an in-memory identity.
    pub fn acquire(dir: &Path) -> Result<Self, IdentityError> {
        std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for slot in 1..=MAX_SLOTS {
            let path = slot_path(dir, slot);
            let lock_path = path.with_extension("lock");
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|source| IdentityError::Io {
                    path: lock_path.display().to_string(),
                    source,
                })?;
            match lock.try_lock() {
                Ok(()) => {
                    let token = load_or_create(&path)?;
                    return Ok(Self {
                        token,
                        path: Some(path),
                        _lock: Some(lock),
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(IdentityError::Io {
                        path: lock_path.display().to_string(),
                        source,
                    });
                }
            }
        }
        tracing::warn!("all {MAX_SLOTS} identity slots are in use; using an in-memory identity");
        Self::ephemeral()
    }
}

/// The file of identity slot `slot` (1 is `identity`, then `identity-2`, ...).
pub fn slot_path(dir: &Path, slot: u32) -> PathBuf {
    if slot == 1 {
        dir.join("identity")
    } else {
        dir.join(format!("identity-{slot}"))
    }
}

/// A fresh random token: 32 bytes from the OS, hex-encoded (64 characters).
pub fn new_token() -> Result<String, IdentityError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| IdentityError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The token sent to the server at `url`: derived from the stored secret and the server's origin
/// (scheme, host, port), so that no server the bridge is pointed at learns the token another
/// relay knows the user by, and cannot take over the user's seat there.
pub fn token_for(secret: &str, url: &str) -> String {
    use sha2::{Digest, Sha256};
    let origin = match url.parse::<http::Uri>() {
        Ok(uri) => format!(
            "{}://{}:{}",
            uri.scheme_str().unwrap_or("").to_ascii_lowercase(),
            uri.host().unwrap_or("").to_ascii_lowercase(),
            uri.port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                })
        ),
        Err(_) => url.to_owned(),
    };
    let digest = Sha256::digest(format!("mcp-chat identity v1\n{origin}\n{secret}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `token` is a usable identity token.
pub fn is_valid_token(token: &str) -> bool {
    (MIN_IDENTITY_TOKEN_CHARS..=MAX_IDENTITY_TOKEN_CHARS).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads the token in `path`, creating the file (owner-only) with a new token when it is missing
/// or unusable. Tightens the file's permissions if others could read it.
pub fn load_or_create(path: &Path) -> Result<String, IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            if is_valid_token(&token) {
                restrict_permissions(path).map_err(io)?;
                return Ok(token);
            }
            tracing::warn!(path = %path.display(), "identity file is unusable; making a new one");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let token = new_token()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Write a private temporary file, then rename: never a half-written or world-readable token.
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(token.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    restrict_permissions(&tmp).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(token)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) -> std::io::Result<()> {
    // On Windows the file inherits the user profile's ACL, which only the user can read.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_valid() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(is_valid_token(&a));
        assert!(!is_valid_token("short"));
    }

    #[test]
    fn each_relay_origin_gets_its_own_token() {
        let secret = new_token().unwrap();
        let a = token_for(&secret, "https://relay.example/mcp");
        assert_eq!(a, token_for(&secret, "https://RELAY.example:443/other"));
        assert_ne!(a, token_for(&secret, "https://evil.example/mcp"));
        assert_ne!(a, secret);
        assert!(is_valid_token(&a));
    }

    #[test]
    fn concurrent_bridges_get_their_own_slots() {
        let dir = std::env::temp_dir().join(format!("mcp-chat-slots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = Identity::acquire(&dir).unwrap();
        let second = Identity::acquire(&dir).unwrap();
        assert_ne!(
            first.token, second.token,
            "two live bridges, two participants"
        );
        assert_eq!(first.path, Some(slot_path(&dir, 1)));
        assert_eq!(second.path, Some(slot_path(&dir, 2)));
        let token = first.token.clone();
        drop(first);
        let again = Identity::acquire(&dir).unwrap();
        assert_eq!(again.token, token, "a restarted bridge gets its slot back");
    }

    #[test]
    fn token_file_is_created_once_and_private() {
        let dir = std::env::temp_dir().join(format!("mcp-chat-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("identity");
        let first = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(first, again, "the same token on every run");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            load_or_create(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "loosened permissions are tightened");
        }
        std::fs::write(&path, "garbage").unwrap();
        let replaced = load_or_create(&path).unwrap();
        assert_ne!(replaced, first);
        assert!(is_valid_token(&replaced));
    }
}
