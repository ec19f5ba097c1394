/* phantom.c: the exports of the persistent-process world in terms of the
 * handlers of phantom.h, over the wit-bindgen bindings (persistent_process.c). */
#include "phantom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persistent_process.h"

/* wit-bindgen's bindings link an object carrying the world's type; phantom
 * build and phantom componentize embed that type themselves, so the object
 * is not needed and this stands in for its symbol. */
void __component_type_object_force_link_persistent_process(void) {}

static persistent_process_status_t status;
static char *init_error;

__attribute__((weak)) void phantom_on_timer(uint32_t timer) { (void)timer; }
__attribute__((weak)) void phantom_on_line(const char *line, size_t len) {
  (void)line;
  (void)len;
}
__attribute__((weak)) void phantom_on_closed(void) {}
__attribute__((weak)) void phantom_on_resume(void) {}

void phantom_busy(void) { status.tag = PHANTOM_OS_TYPES_STATUS_BUSY; }

void phantom_exit(int code) {
  status.tag = PHANTOM_OS_TYPES_STATUS_EXIT;
  status.val.exit = code;
}

void phantom_fail(const char *message) {
  free(init_error);
  init_error = strdup(message ? message : "init failed");
}

static int64_t timer(bool periodic, uint64_t ms) {
  phantom_os_timers_timer_id_t id;
  phantom_os_timers_timer_error_t err;
  bool ok = periodic ? phantom_os_timers_periodic(ms * 1000000ull, &id, &err)
                     : phantom_os_timers_one_shot(ms * 1000000ull, &id, &err);
  if (ok) return id;
  return err == PHANTOM_OS_TIMERS_TIMER_ERROR_PERIOD_TOO_SHORT ? -1 : -2;
}

int64_t phantom_timer_periodic_ms(uint64_t period_ms) { return timer(true, period_ms); }
int64_t phantom_timer_once_ms(uint64_t delay_ms) { return timer(false, delay_ms); }
bool phantom_timer_cancel(uint32_t t) { return phantom_os_timers_cancel(t); }

void phantom_write(const void *bytes, size_t len) {
  persistent_process_list_u8_t list = {(uint8_t *)bytes, len};
  phantom_os_console_write(&list);
}

char *phantom_process_name(void) {
  persistent_process_string_t s;
  phantom_os_process_name(&s);
  char *out = malloc(s.len + 1);
  if (out) {
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
  }
  persistent_process_string_free(&s);
  return out;
}

uint64_t phantom_restore_count(void) { return phantom_os_process_restore_count(); }
uint64_t phantom_checkpoint_id(void) { return phantom_os_process_checkpoint_id(); }
void phantom_request_checkpoint(void) { phantom_os_process_request_checkpoint(); }

static char *dup_n(const uint8_t *s, size_t len) {
  char *out = malloc(len + 1);
  if (!out) abort();
  memcpy(out, s, len);
  out[len] = 0;
  return out;
}

/* Output leaves when a call returns: nothing may stay in stdio's buffers. */
static void flush(void) {
  fflush(stdout);
  fflush(stderr);
}

bool exports_persistent_process_init(persistent_process_list_string_t *args,
                                     persistent_process_list_file_t *files,
                                     persistent_process_status_t *ret,
                                     persistent_process_string_t *err) {
  int argc = (int)args->len + 1;
  char **argv = calloc((size_t)argc + 1, sizeof(char *));
  if (!argv) abort();
  argv[0] = phantom_process_name();
  for (size_t i = 0; i < args->len; i++) argv[i + 1] = dup_n(args->ptr[i].ptr, args->ptr[i].len);
  persistent_process_list_string_free(args);
  persistent_process_list_file_free(files);
  status.tag = PHANTOM_OS_TYPES_STATUS_IDLE;
  int rc = phantom_init(argc, argv);
  flush();
  if (rc != 0) {
    persistent_process_string_dup(err, init_error ? init_error : "phantom_init failed");
    return false;
  }
  *ret = status;
  return true;
}

void exports_persistent_process_handle(persistent_process_event_t *event,
                                       persistent_process_status_t *ret) {
  status.tag = PHANTOM_OS_TYPES_STATUS_IDLE;
  switch (event->tag) {
    case PHANTOM_OS_TYPES_EVENT_TIMER:
      phantom_on_timer(event->val.timer);
      break;
    case PHANTOM_OS_TYPES_EVENT_CONSOLE_LINE: {
      char *line = dup_n(event->val.console_line.ptr, event->val.console_line.len);
      phantom_on_line(line, event->val.console_line.len);
      free(line);
      break;
    }
    case PHANTOM_OS_TYPES_EVENT_CONSOLE_CLOSED:
      phantom_on_closed();
      break;
    case PHANTOM_OS_TYPES_EVENT_RESUME:
      phantom_on_resume();
      break;
  }
  persistent_process_event_free(event);
  flush();
  *ret = status;
}
