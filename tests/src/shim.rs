//! Containers run by the real `shibafu-agent shim` in a scratch directory with a fresh pinned
//! network namespace (its `lo` up), cleaned up on drop even when a test fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shibafu_overlay::container::caps::CapSet;
use shibafu_overlay::container::launch;
use shibafu_overlay::container::netns_file;
use shibafu_overlay::container::state::{ContainerDir, Status};
use shibafu_overlay::container::ContainerSpec;

/// A scratch state directory and netns file, removed on drop even when the test fails.
pub struct Scratch {
    /// The state directory (containers live under it).
    pub root: PathBuf,
}

impl Scratch {
    /// A fresh scratch directory for `tag`, without a namespace yet.
    pub fn new(tag: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("sf-hc-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("mkdir");
        Scratch { root }
    }

    /// Where the namespace is pinned.
    pub fn netns(&self) -> PathBuf {
        self.root.join("netns")
    }

    /// Prepares container `name` running `command` with `caps`, in this scratch's namespace.
    pub fn container(&self, name: &str, command: &[&str], caps: CapSet) -> ContainerDir {
        self.container_in(name, command, caps, None)
    }

    /// The same with `rootfs` as its root filesystem (`None`: the host's).
    pub fn container_in(
        &self,
        name: &str,
        command: &[&str],
        caps: CapSet,
        rootfs: Option<PathBuf>,
    ) -> ContainerDir {
        let dir = ContainerDir::under(&self.root, name);
        let spec = ContainerSpec {
            name: name.into(),
            netns: self.netns(),
            dir: dir.path().to_path_buf(),
            rootfs,
            command: command.iter().map(|c| c.to_string()).collect(),
            env: vec!["GREETING=hello".into()],
            caps,
        };
        dir.prepare(
            &spec,
            "nameserver 172.30.0.1\nsearch test.local\n",
            "172.30.0.2\tweb\n",
            &format!("{name}\n"),
        )
        .expect("prepare");
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(d) = std::fs::read_dir(self.root.join("containers")) {
            for e in d.flatten() {
                launch::stop(&ContainerDir::new(e.path()), Duration::from_millis(100));
            }
        }
        let _ = netns_file::remove(&self.netns());
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Waits (up to 5 s) for the container to exit; its exit code.
pub fn wait_exit(dir: &ContainerDir) -> i32 {
    for _ in 0..500 {
        if let Status::Exited(code) = dir.status() {
            return code;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "container did not exit; log:\n{}",
        std::fs::read_to_string(dir.log()).unwrap_or_default()
    );
}

/// Copies `file` to the same path under `root`.
fn copy_in(root: &Path, file: &Path) {
    let to = root.join(file.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    std::fs::copy(file, &to).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
}

/// A root filesystem with busybox (as sh, sleep, echo) and the libraries it needs.
pub fn busybox_root(root: &Path) {
    let busybox = Path::new("/bin/busybox");
    copy_in(root, busybox);
    let ldd = std::process::Command::new("ldd")
        .arg(busybox)
        .output()
        .expect("ldd");
    for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if lib.starts_with('/') {
            copy_in(root, Path::new(lib));
        }
    }
    for dir in ["proc", "sys", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(dir)).expect("dir");
    }
    for tool in ["sh", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).expect("link");
    }
}
