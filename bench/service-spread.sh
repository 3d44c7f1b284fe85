#!/usr/bin/env bash
# How real clients spread over a service's instances: a small HTTP client in C, built twice
# (gcc against glibc, musl-gcc against musl), resolves web.spread.local with getaddrinfo and
# fetches / from the first address, N times per run, from a container on node2 of a 3-node lab;
# three instances (busybox httpd, one per node) answer their own name. Runs round-robin, then
# weighted with weights 3:1:1. Prints each instance's share per client and policy.
#
# Usage (repo root, as root): bench/service-spread.sh [N requests per run, default 300]
#   NO_BUILD=1   skip `cargo build --release` (binaries must be in target/release)
#   LAB=NAME     lab name (default bspread)
# Installs musl-tools (musl-gcc) if missing. The trap takes the lab down and removes the temp
# directory on any exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-300}
LAB=${LAB:-bspread}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case $N in '' | *[!0-9]*) echo "N must be a number" >&2; exit 1 ;; esac
[ "$N" -ge 1 ] && [ "$N" -le 5000 ] || { echo "N must be 1..5000" >&2; exit 1; }
command -v musl-gcc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins
W=$(mktemp -d /tmp/sfbspread.XXXX)
chmod 755 "$W"
LAB_STARTED=
cleanup() {
  local rc=$?
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$W/get.c" <<'C'
/* get NAME N: N times, resolve NAME with getaddrinfo, GET / from the first address, print the
   body's first line (or "failed"). The C library's resolver decides which address is first. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int n = argc > 2 ? atoi(argv[2]) : 1;
  for (int i = 0; i < n; i++) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    char line[256] = "failed";
    if (getaddrinfo(argv[1], "80", &hints, &res) == 0 && res) {
      int fd = socket(res->ai_family, SOCK_STREAM, 0);
      if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        const char *req = "GET / HTTP/1.0\r\n\r\n";
        char buf[4096];
        ssize_t got = 0, r;
        if (write(fd, req, strlen(req)) > 0)
          while (got < (ssize_t)sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += r;
        buf[got] = 0;
        char *body = strstr(buf, "\r\n\r\n");
        if (body) { body += 4; body[strcspn(body, "\r\n")] = 0; snprintf(line, sizeof line, "%s", body); }
      }
      if (fd >= 0) close(fd);
      freeaddrinfo(res);
    }
    puts(line);
  }
  return 0;
}
C
gcc -O2 -o "$W/get-glibc" "$W/get.c"
musl-gcc -O2 -static -o "$W/get-musl" "$W/get.c"

. bench/lab-lib.sh
lab_bench_up 3
SH="$W/bin/shibafu"
on node1 "$SH" network create spread 10.77.0.0/24 >/dev/null
start_web() { # NODE NAME [FLAGS...]
  local node=$1 name=$2; shift 2
  mkdir -p "$W/www/$name"; echo "$name" >"$W/www/$name/index.html"
  on "$node" "$SH" run -d --name "$name" --network spread --service web --port 80 "$@" \
    -- busybox httpd -f -p 80 -h "$W/www/$name" >/dev/null
}
start_web node1 web1; start_web node2 web2; start_web node3 web3
on node2 "$SH" run -d --name client --network spread -- sleep 3600 >/dev/null
sleep 1

share() { # POLICY CLIENT
  local out
  out=$(on node2 "$SH" exec client "$W/get-$2" web.spread.local "$N")
  printf '%-12s %-6s' "$1" "$2"
  local w c
  for w in web1 web2 web3 failed; do
    c=$(grep -cx "$w" <<<"$out" || true)
    awk -v w="$w" -v c="$c" -v n="$N" 'BEGIN { printf " %s=%d (%.1f%%)", w, c, 100 * c / n }'
  done
  echo
}
echo "# service spread, N=$N per run, $(date -u +%FT%TZ), $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty), load $(cut -d' ' -f1-3 /proc/loadavg)"
share round-robin glibc
share round-robin musl
on node1 "$SH" service update web --lb weighted >/dev/null
on node1 "$SH" rm -f web1 >/dev/null
start_web node1 web1 --weight 3
sleep 1
share weighted-3:1:1 glibc
share weighted-3:1:1 musl
