//! A node's key pair on disk: `<state-dir>/wireguard/private.key` (base64, as `wg genkey`
//! writes it, mode 0600), `next.key` while a rotation is under way, and `tunnel` (the node's
//! tunnel address), all kept across restarts.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wireguard_control::Key;

use super::WgError;

/// The key files of one node.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    dir: PathBuf,
}

/// The keys a node holds: the one in use and, during a rotation, the next.
#[derive(Clone)]
pub struct Keys {
    /// The private key in use.
    pub current: Key,
    /// The private key being rotated to.
    pub next: Option<Key>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("current", &public_of(&self.current))
            .field("next", &self.next.as_ref().map(public_of))
            .finish()
    }
}

/// The public key (base64) of private key `k`.
pub fn public_of(k: &Key) -> String {
    k.get_public().to_base64()
}

impl KeyFiles {
    /// The key files under `state_dir`.
    pub fn new(state_dir: &Path) -> KeyFiles {
        KeyFiles {
            dir: state_dir.join("wireguard"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads the keys, creating the private key on first use (the directory is made 0700).
    pub fn load_or_create(&self) -> Result<Keys, WgError> {
        if self.dir.exists() {
            self.ensure_dir()?;
        }
        let current = match self.read_key("private.key")? {
            Some(k) => k,
            None => {
                let k = Key::generate_private();
                self.write_secret("private.key", &k)?;
                k
            }
        };
        let next = self.read_key("next.key")?;
        Ok(Keys { current, next })
    }

    /// Creates (or returns the existing) next key.
    pub fn create_next(&self) -> Result<Key, WgError> {
        if let Some(k) = self.read_key("next.key")? {
            return Ok(k);
        }
        let k = Key::generate_private();
        self.write_secret("next.key", &k)?;
        Ok(k)
    }

    /// Makes the next key the one in use (an atomic rename).
    pub fn promote_next(&self) -> Result<(), WgError> {
        fs::rename(self.path("next.key"), self.path("private.key"))
            .map_err(|e| self.io("promoting next.key to private.key", e))
    }

    /// The tunnel address kept from an earlier run, if any.
    pub fn tunnel(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.path("tunnel"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Keeps `addr` as the tunnel address.
    pub fn save_tunnel(&self, addr: Ipv4Addr) -> Result<(), WgError> {
        self.ensure_dir()?;
        fs::write(self.path("tunnel"), format!("{addr}\n"))
            .map_err(|e| self.io("writing the tunnel address", e))
    }

    fn ensure_dir(&self) -> Result<(), WgError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.io("creating the key directory", e))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| self.io("restricting the key directory", e))
    }

    fn read_key(&self, name: &str) -> Result<Option<Key>, WgError> {
        let path = self.path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("reading a key", e)),
        };
        let mode = fs::metadata(&path)
            .map_err(|e| self.io("reading a key's mode", e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format_args!("{:o}", mode & 0o777), "key file readable by others; restricting it to 0600");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(|e| self.io("restricting a key file", e))?;
        }
        Key::from_base64(text.trim())
            .map(Some)
            .map_err(|_| WgError::BadKeyFile(path))
    }

    /// Writes `key` to `name` through a temporary file created 0600, renamed into place.
    fn write_secret(&self, name: &str, key: &Key) -> Result<(), WgError> {
        self.ensure_dir()?;
        let tmp = self.path(&format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io("creating a key file", e))?;
        writeln!(f, "{}", key.to_base64())
            .and_then(|()| f.sync_all())
            .map_err(|e| self.io("writing a key file", e))?;
        fs::rename(&tmp, self.path(name)).map_err(|e| self.io("placing a key file", e))
    }

    fn io(&self, what: &str, source: std::io::Error) -> WgError {
        WgError::KeyFiles {
            what: what.to_string(),
            dir: self.dir.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sf-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_key_is_created_once_private_and_kept() {
        let d = scratch("kept");
        let files = KeyFiles::new(&d);
        let a = files.load_or_create().expect("create");
        let b = files.load_or_create().expect("load");
        assert_eq!(public_of(&a.current), public_of(&b.current));
        assert!(a.next.is_none());
        let mode = fs::metadata(d.join("wireguard/private.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_rotation_survives_a_restart_and_promotes_the_next_key() {
        let d = scratch("rotate");
        let files = KeyFiles::new(&d);
        let old = files.load_or_create().expect("create").current;
        let next = files.create_next().expect("next");
        assert_eq!(
            public_of(&files.create_next().expect("again")),
            public_of(&next)
        );
        let mid = files.load_or_create().expect("load");
        assert_eq!(mid.next.as_ref().map(public_of), Some(public_of(&next)));
        files.promote_next().expect("promote");
        let after = files.load_or_create().expect("load");
        assert_eq!(public_of(&after.current), public_of(&next));
        assert_ne!(public_of(&after.current), public_of(&old));
        assert!(after.next.is_none());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_and_loose_modes_are_tightened() {
        let d = scratch("bad");
        let files = KeyFiles::new(&d);
        files.load_or_create().expect("create");
        let path = d.join("wireguard/private.key");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        files.load_or_create().expect("load");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(&path, "not a key\n").expect("write");
        assert!(matches!(
            files.load_or_create(),
            Err(WgError::BadKeyFile(_))
        ));
        files
            .save_tunnel("100.64.1.2".parse().expect("ip"))
            .expect("save");
        assert_eq!(files.tunnel(), Some("100.64.1.2".parse().expect("ip")));
        let _ = fs::remove_dir_all(&d);
    }
}
