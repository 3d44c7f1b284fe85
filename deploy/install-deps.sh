#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need on a fresh Debian machine.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
pkgs=(etcd-server etcd-client protobuf-compiler libprotobuf-dev iproute2 nftables bind9-dnsutils knot-dnsutils
      iputils-ping iperf3 busybox python3 procps util-linux psmisc jq curl dnsmasq-base tcpdump wireguard-tools
      graphviz containernetworking-plugins iptables)
# graphviz: `shibafu network topology --format svg` draws with dot. containernetworking-plugins
# (the CNI reference plugins in /usr/lib/cni, iptables for their portmap and firewall): the CNI
# tests chain shibafu-cni with them and compare it with bridge + host-local.
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# etcd-server's package starts a system etcd on the host; shibafu runs its own inside namespaces.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
  systemctl disable etcd >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "install-deps: cargo not found (install the Rust toolchain)" >&2; exit 1; }
# `make test` runs rustfmt and clippy: add them to a rustup toolchain that lacks them.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || { echo "install-deps: cargo $component missing" >&2; exit 1; }
    rustup component add "$component"
  fi
done
# Userspace WireGuard (boringtun) for kernels without the module: the agent runs it when the
# kernel cannot create a wireguard link, and the tests and CI run that path.
if ! command -v boringtun-cli >/dev/null 2>&1; then
  echo "install-deps: installing boringtun-cli 0.7.1 (cargo install, about a minute)"
  cargo install boringtun-cli --locked --version 0.7.1 --root /usr/local --quiet
fi
echo "install-deps: ok"
