// How the size of write calls decides how fast a file reads back through
// mmap (page-cache folios are as large as the write call allows).
// Writes 64 MiB in calls of 64 MiB .. 64 KiB, then in one writev of 64 KiB
// pieces, and reads each file back through a fresh mapping. See
// docs/BENCHMARKS.md, "Session 8: writev after all".
//
//   gcc -O2 bench/write_calls.c -o /tmp/write_calls && /tmp/write_calls [DIR]
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#define N (64ul << 20)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static double read_back(int fd) {
  char *m = mmap(0, N, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) { perror("mmap"); exit(1); }
  double s = now();
  volatile unsigned long sum = 0;
  for (size_t i = 0; i < N; i += 8) sum += *(unsigned long *)(m + i);
  double secs = now() - s;
  munmap(m, N);
  return N / secs / 1e6;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : ".";
  char *buf = malloc(N);
  for (size_t i = 0; i < N; i++) buf[i] = (char)(i * 31);
  size_t pieces[] = {N, 8 << 20, 1 << 20, 256 << 10, 64 << 10};
  char path[4096];
  snprintf(path, sizeof path, "%s/write_calls.tmp", dir);
  for (int round = 0; round < 3; round++) {
    for (int p = 0; p < 6; p++) {
      size_t piece = p < 5 ? pieces[p] : 64 << 10;
      unlink(path);
      int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
      if (fd < 0) { perror(path); return 1; }
      double s = now();
      if (p < 5) {
        for (size_t o = 0; o < N; o += piece)
          if (write(fd, buf + o, piece) != (ssize_t)piece) { perror("write"); return 1; }
      } else {
        int n = N / piece;
        struct iovec *iov = malloc(n * sizeof *iov);
        for (int i = 0; i < n; i++) { iov[i].iov_base = buf + i * piece; iov[i].iov_len = piece; }
        for (int at = 0; at < n; at += 1024)
          if (writev(fd, iov + at, n - at > 1024 ? 1024 : n - at) < 0) { perror("writev"); return 1; }
        free(iov);
      }
      double w = now() - s;
      printf("%-6s %6zu KiB pieces: write %6.0f MB/s, mmap read %6.0f MB/s\n",
             p < 5 ? "write" : "writev", piece >> 10, N / w / 1e6, read_back(fd));
      close(fd);
    }
  }
  unlink(path);
  return 0;
}
