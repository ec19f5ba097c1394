/* c-memtouch: the C twin of the Rust `memtouch` guest, for the checkpoint
 * benchmark (a C guest's pause against a Rust guest's).
 *
 * Init args: --mib N (default 1): a malloc'd buffer of N MiB. Console lines:
 *   touch <k> <seed>  writes one byte into each of k distinct pages spread
 *                     evenly across the buffer; prints `touched <k>`
 *   sum               prints `sum=<hex>`, FNV-1a 64 of the buffer */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phantom.h"

#define PAGE 4096

static unsigned char *buffer;
static size_t size;

static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

int phantom_init(int argc, char **argv) {
  size_t mib = 1;
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--mib") == 0) mib = strtoull(argv[i + 1], NULL, 10);
  size = mib << 20;
  buffer = calloc(size, 1);
  if (!buffer) {
    phantom_fail("cannot allocate the buffer");
    return 1;
  }
  return 0;
}

void phantom_on_line(const char *line, size_t len) {
  (void)len;
  unsigned long long k, seed;
  if (sscanf(line, "touch %llu %llu", &k, &seed) == 2) {
    size_t pages = size / PAGE;
    if (k > pages) k = pages;
    for (size_t i = 0; i < k; i++) {
      size_t page = i * pages / k;
      uint64_t mix = splitmix64(seed ^ (i * 0x9e3779b97f4a7c15ull));
      buffer[page * PAGE + mix % PAGE] = (unsigned char)(mix >> 56) | 1;
    }
    printf("touched %llu\n", k);
  } else if (strcmp(line, "sum") == 0) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++) h = (h ^ buffer[i]) * 0x100000001b3ull;
    printf("sum=%016llx\n", (unsigned long long)h);
  } else if (line[0]) {
    printf("error: unknown command '%s'\n", line);
  }
}
