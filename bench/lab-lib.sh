# Shared set-up of the lab benchmarks (sourced, not run). Needs W (a temp dir) and LAB set, and
# the caller's EXIT trap to take the lab down when LAB_STARTED is set.
# lab_bench_up NODES: private copy of the release binaries (a concurrent rebuild of target/
# cannot change them mid-run), refuses a lab that is already up, starts the lab (secure, as
# by default: TLS with client certificates), and sets LABCMD, COORD, ETCD, LABDIR and the
# function on(); exports the lab admin's certificate for the CLI (SHIBAFU_TLS_*) and etcdctl
# (ETCDCTL_CACERT/CERT/KEY), so every command of the bench reaches etcd and the coordinator.
lab_bench_up() {
  mkdir "$W/bin"
  local b
  for b in shibafu shibafu-agent shibafu-coordinator shibafu-lab; do cp "target/release/$b" "$W/bin/"; done
  export SHIBAFU_BIN_DIR=$W/bin
  LABCMD=("$W/bin/shibafu-lab" --name "$LAB")
  if "${LABCMD[@]}" status >/dev/null 2>&1; then
    echo "lab $LAB is already up; remove it with: target/release/shibafu-lab --name $LAB down" >&2
    exit 1
  fi
  LAB_STARTED=1
  "${LABCMD[@]}" up --nodes "$1" >"$W/up.log" 2>&1 || { cat "$W/up.log" >&2; exit 1; }
  local state
  state=$("${LABCMD[@]}" status --json)
  COORD=$(sed -n 's/.*"coordinator_url": *"\([^"]*\)".*/\1/p' <<<"$state")
  ETCD=$(sed -n 's/.*"etcd_url": *"\([^"]*\)".*/\1/p' <<<"$state")
  LABDIR=$(sed -n 's/.*"dir": *"\([^"]*\)".*/\1/p' <<<"$state")
  if [ -d "$LABDIR/pki" ]; then
    export SHIBAFU_TLS_CA=$LABDIR/pki/ca.pem SHIBAFU_TLS_CERT=$LABDIR/pki/admin.pem \
      SHIBAFU_TLS_KEY=$LABDIR/pki/admin-key.pem ETCDCTL_CACERT=$LABDIR/pki/ca.pem \
      ETCDCTL_CERT=$LABDIR/pki/admin.pem ETCDCTL_KEY=$LABDIR/pki/admin-key.pem
  fi
}

# on NODE CMD...: run CMD in NODE's namespace with the CLI pointed at its agent.
on() {
  local node=$1; shift
  ip netns exec "sf-$LAB-$node" env SHIBAFU_COORDINATOR="$COORD" \
    SHIBAFU_AGENT="unix:$LABDIR/nodes/$node/agent.sock" "$@"
}
