/* c-doorbell: a device process in C (phantom.h's GPIO calls and
 * phantom_on_gpio_edge). It watches the input granted as `bell` for rising
 * edges; each press counts a ring and toggles the output granted as
 * `chime` (high after an odd number of rings), printing
 *   ring <n> chime <high|low> at <ms>
 * The console line `status` prints `rings <n> chime <high|low>`.
 *
 * No persistence code: the count is a global, the pin handles are kept as
 * they are; after kill -9 the host opens the pins again (the chime at the
 * level last set) and the journal delivers every edge once. Spawn it with
 * a manifest granting `bell` and `chime` and a scenario that presses the
 * button (`phantom new --lang c --devices` writes both next to this file;
 * guests/doorbell/demo/ has them too).
 */
#include "phantom.h"

#include <stdio.h>
#include <string.h>

static uint32_t bell, chime;
static unsigned long long rings;

static const char *level(bool high) { return high ? "high" : "low"; }

int phantom_init(int argc, char **argv) {
  (void)argc;
  (void)argv;
  int64_t b = phantom_gpio_open("bell", PHANTOM_PIN_INPUT, false);
  if (b < 0) {
    phantom_fail("cannot open the pin granted as `bell`");
    return 1;
  }
  bell = (uint32_t)b;
  if (phantom_gpio_watch(bell, PHANTOM_EDGE_RISING) != 0) {
    phantom_fail("cannot watch `bell`");
    return 1;
  }
  int64_t c = phantom_gpio_open("chime", PHANTOM_PIN_OUTPUT, false);
  if (c < 0) {
    phantom_fail("cannot open the pin granted as `chime`");
    return 1;
  }
  chime = (uint32_t)c;
  return 0;
}

void phantom_on_gpio_edge(uint32_t pin, bool high, uint64_t time_ns) {
  if (pin != bell || !high) return;
  rings++;
  bool on = rings % 2 == 1;
  int rc = phantom_gpio_set(chime, on);
  if (rc != 0) printf("chime error %d\n", rc);
  printf("ring %llu chime %s at %llu\n", rings, level(on), (unsigned long long)(time_ns / 1000000));
}

void phantom_on_line(const char *line, size_t len) {
  (void)len;
  if (strcmp(line, "status") == 0) printf("rings %llu chime %s\n", rings, level(rings % 2 == 1));
}
