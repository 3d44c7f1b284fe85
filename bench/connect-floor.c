// The floor under a TCP health check: the CPU one process spends doing what the agent's check
// does, with no runtime, timers or bookkeeping: open the instance's namespace, enter it, make a
// socket there, go back, connect to the instance's address (over the namespace's loopback), close
// with a reset. The kernel work of the whole handshake (the listener's side too, which runs in
// softirq on the connecting thread) is charged to this process, as it is to the agent.
//
// Usage: connect-floor FILE PORT ROUNDS: FILE has one "PID IPV4" line per instance (PID: a
// process in its namespace); connects ROUNDS times to each, ten at a time 5 ms apart; prints
// the CPU microseconds per check.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX 4096
static struct sockaddr_in addrs[MAX];
static char paths[MAX][48];

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s FILE PORT ROUNDS\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "r");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  int n = 0, pid;
  char ip[64];
  while (n < MAX && fscanf(f, "%d %63s", &pid, ip) == 2) {
    addrs[n].sin_family = AF_INET;
    addrs[n].sin_port = htons(atoi(argv[2]));
    if (inet_pton(AF_INET, ip, &addrs[n].sin_addr) != 1) continue;
    snprintf(paths[n], sizeof paths[n], "/proc/%d/ns/net", pid);
    n++;
  }
  fclose(f);
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int rounds = atoi(argv[3]), done = 0, failed = 0;
  struct linger reset = {1, 0};
  for (int r = 0; r < rounds; r++) {
    for (int i = 0; i < n; i++) {
      int ns = open(paths[i], O_RDONLY | O_CLOEXEC);
      if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
        perror(paths[i]);
        return 1;
      }
      int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (setns(home, CLONE_NEWNET) != 0) {
        perror("setns home");
        return 1;
      }
      close(ns);
      setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      if (connect(s, (struct sockaddr *)&addrs[i], sizeof addrs[i]) != 0) failed++;
      close(s);
      // In tens, 5 ms apart, as the agent's rounds share 10 ms slots: one wake-up per ten.
      if (++done % 10 == 0) usleep(5000);
    }
  }
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  double us = (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
  printf("floor     %.1f us CPU per bare check (%d connects in %d namespaces, %d failed)\n",
         done ? us / done : 0.0, done, n, failed);
  return failed ? 1 : 0;
}
