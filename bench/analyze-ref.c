/*
 * The yardstick of `npm run bench:analyze` (not part of dorascope): the same ΔM/ΔD math over the
 * same bytes, as fast as a plain C program gets it. Files are mmap'ed (populated); BF16 is decoded in
 * registers; per output feature (a torch row) ‖w0‖², ‖wt‖², w0·wt and ‖wt − w0‖² are summed in
 * float64 as dorascope does (products of float32 values are exact in float64), in SIMD lanes
 * (`omp simd` allows the reassociation); rows are shared between threads with OpenMP.
 *
 * usage: analyze-ref BASE_FILE N_CK CK_FILE... < TENSORS
 *   TENSORS: one line per tensor, "base_offset ck_offset rows cols" (absolute byte offsets of the
 *   BF16 data in the base and in every checkpoint; the bench reads them from the headers).
 * Prints one line: "tensors T elements E sumDM S1 sumDD S2" (the ΔM and ΔD of every tensor and
 * checkpoint, summed, to check that it did the same work as dorascope).
 * usage: analyze-ref --drop FILE...   evicts the files from the page cache (posix_fadvise DONTNEED).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint16_t *map_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) { perror(path); exit(2); }
  struct stat st;
  fstat(fd, &st);
  *len = (size_t)st.st_size;
  void *p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0); /* map every page up front: no fault per page */
  if (p == MAP_FAILED) { perror("mmap"); exit(2); }
  madvise(p, *len, MADV_SEQUENTIAL);
  close(fd);
  return (const uint16_t *)p;
}

static inline float bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--drop") == 0) {
    for (int i = 2; i < argc; i++) {
      int fd = open(argv[i], O_RDONLY);
      if (fd < 0) { perror(argv[i]); return 2; }
      fdatasync(fd);
      posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      close(fd);
    }
    return 0;
  }
  if (argc < 3) { fprintf(stderr, "usage: analyze-ref BASE N_CK CK... < TENSORS\n"); return 2; }
  size_t len;
  const char *base = (const char *)map_file(argv[1], &len);
  int nck = atoi(argv[2]);
  const char **cks = malloc(sizeof(char *) * (size_t)nck);
  for (int c = 0; c < nck; c++) cks[c] = (const char *)map_file(argv[3 + c], &len);
  long long off0, offt;
  long rows, cols;
  double sumDM = 0, sumDD = 0;
  long tensors = 0;
  double elements = 0;
  double *n0 = NULL;
  long cap = 0;
  while (scanf("%lld %lld %ld %ld", &off0, &offt, &rows, &cols) == 4) {
    if (rows > cap) { cap = rows; n0 = realloc(n0, sizeof(double) * (size_t)cap); }
    const uint16_t *w0 = (const uint16_t *)(base + off0);
    /* Base norms once per tensor, for every checkpoint. */
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
      double acc = 0;
      const uint16_t *x = w0 + r * cols;
#pragma omp simd reduction(+ : acc)
      for (long j = 0; j < cols; j++) { double a = bf16(x[j]); acc += a * a; }
      n0[r] = sqrt(acc);
    }
    for (int c = 0; c < nck; c++) {
      const uint16_t *wt = (const uint16_t *)(cks[c] + offt);
      double dm = 0, dd = 0, diff2 = 0;
#pragma omp parallel for schedule(static) reduction(+ : dm, dd, diff2)
      for (long r = 0; r < rows; r++) {
        double dot = 0, tt = 0, e2 = 0;
        const uint16_t *x = w0 + r * cols, *y = wt + r * cols;
#pragma omp simd reduction(+ : dot, tt, e2)
        for (long j = 0; j < cols; j++) {
          double a = bf16(x[j]), b = bf16(y[j]);
          dot += a * b; tt += b * b;
          double e = b - a; e2 += e * e;
        }
        double mt = sqrt(tt), m0 = n0[r];
        dm += fabs(mt - m0);
        double cs = (m0 == 0 || mt == 0) ? (m0 == mt ? 1 : 0) : dot / (m0 * mt);
        dd += 1 - (cs > 1 ? 1 : cs < -1 ? -1 : cs);
        diff2 += e2;
      }
      sumDM += dm / rows;
      sumDD += dd / rows;
      (void)diff2;
    }
    tensors++;
    elements += (double)rows * cols * (nck + 1);
  }
  printf("tensors %ld elements %.0f sumDM %.17g sumDD %.17g\n", tensors, elements, sumDM, sumDD);
  return 0;
}
