/* phantom.c: the exports of the messaging-process world in terms of the
 * handlers of phantom.h, over the wit-bindgen bindings (messaging_process.c). */
#include "phantom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging_process.h"

/* wit-bindgen's bindings link an object carrying the world's type; phantom
 * build and phantom componentize embed that type themselves, so the object
 * is not needed and this stands in for its symbol. */
void __component_type_object_force_link_messaging_process(void) {}

static messaging_process_status_t status;
static char *init_error;

__attribute__((weak)) void phantom_on_timer(uint32_t timer) { (void)timer; }
__attribute__((weak)) void phantom_on_line(const char *line, size_t len) {
  (void)line;
  (void)len;
}
__attribute__((weak)) void phantom_on_closed(void) {}
__attribute__((weak)) void phantom_on_resume(void) {}
__attribute__((weak)) void phantom_on_message(const char *sender, uint64_t id, const void *data,
                                              size_t len) {
  (void)sender;
  (void)id;
  (void)data;
  (void)len;
}

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
  messaging_process_list_u8_t list = {(uint8_t *)bytes, len};
  phantom_os_console_write(&list);
}

int64_t phantom_send(const char *to, const void *data, size_t len) {
  messaging_process_string_t name = {(uint8_t *)to, strlen(to)};
  messaging_process_list_u8_t bytes = {(uint8_t *)data, len};
  uint64_t id;
  phantom_os_messages_send_error_t err;
  if (phantom_os_messages_send(&name, &bytes, &id, &err)) return (int64_t)id;
  switch (err) {
    case PHANTOM_OS_MESSAGES_SEND_ERROR_INVALID_NAME: return -1;
    case PHANTOM_OS_MESSAGES_SEND_ERROR_TOO_LARGE: return -2;
    default: return -3;
  }
}

char *phantom_process_name(void) {
  messaging_process_string_t s;
  phantom_os_process_name(&s);
  char *out = malloc(s.len + 1);
  if (out) {
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
  }
  messaging_process_string_free(&s);
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

bool exports_messaging_process_init(messaging_process_list_string_t *args,
                                     messaging_process_list_file_t *files,
                                     messaging_process_status_t *ret,
                                     messaging_process_string_t *err) {
  int argc = (int)args->len + 1;
  char **argv = calloc((size_t)argc + 1, sizeof(char *));
  if (!argv) abort();
  argv[0] = phantom_process_name();
  for (size_t i = 0; i < args->len; i++) argv[i + 1] = dup_n(args->ptr[i].ptr, args->ptr[i].len);
  messaging_process_list_string_free(args);
  messaging_process_list_file_free(files);
  status.tag = PHANTOM_OS_TYPES_STATUS_IDLE;
  int rc = phantom_init(argc, argv);
  flush();
  if (rc != 0) {
    messaging_process_string_dup(err, init_error ? init_error : "phantom_init failed");
    return false;
  }
  *ret = status;
  return true;
}

void exports_messaging_process_handle(messaging_process_event_t *event,
                                       messaging_process_status_t *ret) {
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
  messaging_process_event_free(event);
  flush();
  *ret = status;
}

void exports_messaging_process_handle_message(messaging_process_message_t *message,
                                              messaging_process_status_t *ret) {
  status.tag = PHANTOM_OS_TYPES_STATUS_IDLE;
  char *sender = dup_n(message->sender.ptr, message->sender.len);
  char *data = dup_n(message->data.ptr, message->data.len);
  phantom_on_message(sender, message->id, data, message->data.len);
  free(sender);
  free(data);
  messaging_process_message_free(message);
  flush();
  *ret = status;
}
