/* A persistent process in C: its globals and its heap survive restarts and
 * kill -9 without a line of persistence code. phantom_init runs once, when
 * the process is spawned; after that it only handles events.
 *
 * Build: phantom build. Run: phantom spawn {name}.wasm --data data --name
 * {name}, then phantom run --data data (type lines; Ctrl-C; run again). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phantom.h"

static unsigned long long ticks;
static int64_t timer;
static char **lines;
static size_t nlines;

int phantom_init(int argc, char **argv) {
  (void)argc;
  timer = phantom_timer_periodic_ms(1000);
  if (timer < 0) {
    phantom_fail("cannot set a timer");
    return 1;
  }
  printf("hello from %s, a persistent process\n", argv[0]);
  return 0;
}

void phantom_on_timer(uint32_t id) {
  if ((int64_t)id == timer) printf("tick %llu\n", ++ticks);
}

void phantom_on_line(const char *line, size_t len) {
  lines = realloc(lines, (nlines + 1) * sizeof *lines);
  lines[nlines++] = strndup(line, len);
  printf("%zu lines so far; the first was '%s'\n", nlines, lines[0]);
}
