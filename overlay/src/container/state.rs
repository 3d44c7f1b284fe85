//! On-disk state of one container: `<state-dir>/containers/<name>/` holding its spec, pid, exit
//! code, log and /etc files. Files, not memory, so an agent restart loses nothing.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{ContainerError, ContainerSpec};

/// Largest piece of a log read at once (1 MiB).
pub const LOG_CHUNK: u64 = 1 << 20;

/// A piece of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    /// The bytes from the requested offset (lossy UTF-8), at most [`LOG_CHUNK`].
    pub text: String,
    /// The offset right after them: where the next read starts.
    pub next_offset: u64,
}

/// Where a container stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Set up but its process has not started (or the pid file is not written yet).
    Created,
    /// Running; the host pid of its PID 1.
    Running(i32),
    /// Exited with this code (128 + signal when killed).
    Exited(i32),
}

/// The state directory of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDir {
    dir: PathBuf,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ContainerError {
    ContainerError::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

impl ContainerDir {
    /// The directory at `dir`.
    pub fn new(dir: PathBuf) -> ContainerDir {
        ContainerDir { dir }
    }

    /// The directory of container `name` under an agent state directory.
    pub fn under(state_dir: &Path, name: &str) -> ContainerDir {
        ContainerDir {
            dir: state_dir.join("containers").join(name),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The spec file.
    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("spec.json")
    }

    /// The combined stdout/stderr log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The file bind-mounted as /etc/resolv.conf.
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// The file bind-mounted as /etc/hosts.
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// The file bind-mounted as /etc/hostname.
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    /// Creates the directory and writes the spec and /etc files.
    pub fn prepare(
        &self,
        spec: &ContainerSpec,
        resolv: &str,
        hosts: &str,
        hostname: &str,
    ) -> Result<(), ContainerError> {
        fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let json = serde_json::to_vec_pretty(spec).map_err(|e| io_err(&self.spec_file(), e))?;
        write_atomic(&self.spec_file(), &json)?;
        write_atomic(&self.resolv_conf(), resolv.as_bytes())?;
        write_atomic(&self.hosts(), hosts.as_bytes())?;
        write_atomic(&self.hostname(), hostname.as_bytes())
    }

    /// Reads the spec back.
    pub fn read_spec(&self) -> Result<ContainerSpec, ContainerError> {
        let p = self.spec_file();
        let data = fs::read(&p).map_err(|e| io_err(&p, e))?;
        serde_json::from_slice(&data).map_err(|e| io_err(&p, e))
    }

    /// Records the host pid of the container's PID 1.
    pub fn write_pid(&self, pid: i32) -> Result<(), ContainerError> {
        write_atomic(&self.dir.join("pid"), pid.to_string().as_bytes())
    }

    /// Records the pid of the shim itself (it writes the exit code after PID 1 is gone).
    pub fn write_shim_pid(&self, pid: i32) -> Result<(), ContainerError> {
        write_atomic(&self.dir.join("shim.pid"), pid.to_string().as_bytes())
    }

    /// Records the exit code.
    pub fn write_exit(&self, code: i32) -> Result<(), ContainerError> {
        write_atomic(&self.dir.join("exit"), code.to_string().as_bytes())
    }

    fn read_num(&self, file: &str) -> Option<i32> {
        fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The shim's pid, once the shim has recorded it.
    pub fn shim_pid(&self) -> Option<i32> {
        self.read_num("shim.pid")
    }

    /// Up to [`LOG_CHUNK`] bytes of the log from `offset`; nothing (at `offset`) while the log
    /// does not exist yet.
    pub fn read_log(&self, offset: u64) -> Result<LogRead, ContainerError> {
        let path = self.log();
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LogRead {
                    text: String::new(),
                    next_offset: offset,
                })
            }
            Err(e) => return Err(io_err(&path, e)),
        };
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err(&path, e))?;
        let mut buf = Vec::new();
        f.take(LOG_CHUNK)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(&path, e))?;
        Ok(LogRead {
            next_offset: offset + buf.len() as u64,
            text: String::from_utf8_lossy(&buf).into_owned(),
        })
    }

    /// Current status, from the pid and exit files and /proc.
    pub fn status(&self) -> Status {
        if let Some(code) = self.read_num("exit") {
            return Status::Exited(code);
        }
        match self.read_num("pid") {
            Some(pid) if alive(pid) => Status::Running(pid),
            // PID 1 is gone: the shim is about to write the exit code, unless it was killed.
            Some(pid) if self.shim_pid().is_some_and(alive) => Status::Running(pid),
            Some(_) => Status::Exited(137),
            None => Status::Created,
        }
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) -> Result<(), ContainerError> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&self.dir, e)),
            _ => Ok(()),
        }
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_files() {
        let tmp = std::env::temp_dir().join(format!("sf-cstate-{}", std::process::id()));
        let d = ContainerDir::under(&tmp, "web");
        let spec = ContainerSpec {
            name: "web".into(),
            netns: tmp.join("netns"),
            dir: d.path().to_path_buf(),
            rootfs: None,
            command: vec!["sleep".into(), "1".into()],
            env: vec![],
            caps: Default::default(),
        };
        d.prepare(&spec, "nameserver 10.0.0.1\n", "", "web\n")
            .expect("prepare");
        assert_eq!(d.read_spec().expect("spec"), spec);
        assert_eq!(d.status(), Status::Created);
        d.write_pid(std::process::id() as i32).expect("pid");
        assert_eq!(d.status(), Status::Running(std::process::id() as i32));
        d.write_exit(3).expect("exit");
        assert_eq!(d.status(), Status::Exited(3));
        assert_eq!(d.shim_pid(), None);
        d.write_shim_pid(7).expect("shim pid");
        assert_eq!(d.shim_pid(), Some(7));
        d.remove().expect("remove");
        d.remove().expect("remove twice");
        let _ = fs::remove_dir_all(&tmp);
    }

    #[test]
    fn log_reads_by_offset() {
        let tmp = std::env::temp_dir().join(format!("sf-clog-{}", std::process::id()));
        let d = ContainerDir::under(&tmp, "job");
        let empty = d.read_log(5).expect("no log yet");
        assert_eq!((empty.text.as_str(), empty.next_offset), ("", 5));
        fs::create_dir_all(d.path()).expect("mkdir");
        fs::write(d.log(), "hello\nworld\n").expect("log");
        let first = d.read_log(0).expect("read");
        assert_eq!(
            (first.text.as_str(), first.next_offset),
            ("hello\nworld\n", 12)
        );
        let tail = d.read_log(6).expect("read");
        assert_eq!((tail.text.as_str(), tail.next_offset), ("world\n", 12));
        let past = d.read_log(12).expect("read");
        assert_eq!((past.text.as_str(), past.next_offset), ("", 12));
        let _ = fs::remove_dir_all(&tmp);
    }
}
