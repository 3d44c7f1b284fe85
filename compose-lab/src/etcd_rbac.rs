//! etcd's own authorization in a secure lab: with `--client-cert-auth`, etcd takes a client
//! certificate's common name as its user. Once auth is on, only the users made here may do
//! anything: every coordinator and node (role `shibafu`: read and write `/shibafu/`) and the
//! lab's admin (etcd's `root`, for etcdctl in `exec`). Any other certificate of the CA, such
//! as the read-only `reader`, is refused by etcd. Done once, after the members are up, through
//! etcdctl on the control host with the admin's certificate.

use crate::components::Bins;
use crate::layout::{coordinator_name, Layout};
use crate::pki::ADMIN;
use crate::state::LabState;

/// The etcd role of agents and coordinators.
pub const ROLE: &str = "shibafu";
/// The key range the role reads and writes.
pub const PREFIX: &str = "/shibafu/";

/// Makes the users and the role, then turns etcd's authentication on.
pub fn enable(
    layout: &Layout,
    bins: &Bins,
    st: &LabState,
    coordinators: usize,
    nodes: &[String],
) -> anyhow::Result<()> {
    let run = |args: &[&str]| etcdctl(layout, bins, st, args);
    run(&["role", "add", ROLE])?;
    run(&[
        "role",
        "grant-permission",
        ROLE,
        "--prefix=true",
        "readwrite",
        PREFIX,
    ])?;
    let members = (0..coordinators)
        .map(coordinator_name)
        .chain(nodes.iter().cloned());
    for user in members {
        run(&["user", "add", &user, "--no-password"])?;
        run(&["user", "grant-role", &user, ROLE])?;
    }
    for root in ["root", ADMIN] {
        run(&["user", "add", root, "--no-password"])?;
        run(&["user", "grant-role", root, "root"])?;
    }
    run(&["auth", "enable"])?;
    tracing::info!(role = ROLE, prefix = PREFIX, "etcd authorization on");
    Ok(())
}

fn etcdctl(layout: &Layout, bins: &Bins, st: &LabState, args: &[&str]) -> anyhow::Result<()> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    crate::procs::run_ok(&mut crate::exec::command(
        layout, bins, st, "ctl", "etcdctl", &args,
    )?)
}
