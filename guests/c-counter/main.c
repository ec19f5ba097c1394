/* c-counter: counts the ticks of a periodic timer, keeping every count in a
 * malloc'd linked list, and prints each one with printf.
 *
 * Init args: --period-ms N (default 100). Each tick prints
 *   count=<n> list=<length> sum=<sum of the list> ok=<1 if the list holds 1..n> dice=<rand() % 6 + 1>
 * and the console line `get` prints `state=<n> ...`, `clock` whether
 * CLOCK_MONOTONIC ever went backwards (it must not, across restores too),
 * `work N` works in N slices (phantom_busy, phantom_on_resume), then
 * prints `work done slices=<N>`.
 * rand() is seeded once from the clock in phantom_init; its state lives in
 * linear memory like everything else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phantom.h"

struct node {
  unsigned long long n;
  struct node *next;
};

static struct node *list;
static unsigned long long count;
static int64_t timer;
static struct timespec last;
static int went_back;
static unsigned long long work_left, work_slices;

static void report(const char *what) {
  unsigned long long len = 0, sum = 0, expect = count;
  int ok = 1;
  for (struct node *p = list; p; p = p->next, expect--) {
    len++;
    sum += p->n;
    if (p->n != expect) ok = 0;
  }
  ok = ok && len == count;
  printf("%s=%llu list=%llu sum=%llu ok=%d dice=%d\n", what, count, len, sum, ok, rand() % 6 + 1);
}

int phantom_init(int argc, char **argv) {
  unsigned long long period = 100;
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--period-ms") == 0) period = strtoull(argv[i + 1], NULL, 10);
  timer = phantom_timer_periodic_ms(period);
  if (timer < 0) {
    phantom_fail("cannot set the timer (the period must be at least 1 ms)");
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &last);
  srand((unsigned)last.tv_nsec);
  printf("c-counter started as %s\n", argv[0]);
  return 0;
}

void phantom_on_timer(uint32_t id) {
  if ((int64_t)id != timer) return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (now.tv_sec < last.tv_sec || (now.tv_sec == last.tv_sec && now.tv_nsec < last.tv_nsec))
    went_back = 1;
  last = now;
  struct node *n = malloc(sizeof *n);
  if (!n) abort();
  n->n = ++count;
  n->next = list;
  list = n;
  report("count");
  if (count % 5 == 0) fprintf(stderr, "note=%llu\n", count);
}

void phantom_on_line(const char *line, size_t len) {
  (void)len;
  if (strcmp(line, "get") == 0) {
    report("state");
  } else if (strncmp(line, "work ", 5) == 0) {
    work_left = strtoull(line + 5, NULL, 10);
    work_slices = 0;
    if (work_left) phantom_busy();
  } else if (strcmp(line, "clock") == 0) {
    printf("clock went_back=%d restores=%llu\n", went_back, (unsigned long long)phantom_restore_count());
  } else if (line[0]) {
    printf("error: unknown command '%s'\n", line);
  }
}

void phantom_on_resume(void) {
  work_slices++;
  if (--work_left) {
    phantom_busy();
  } else {
    printf("work done slices=%llu\n", work_slices);
  }
}
