/* phantom.c: the exports of the device-process world (phantom:devices; it
 * includes everything of phantom:os's messaging-process) in terms of the
 * handlers of phantom.h, over the wit-bindgen bindings (device_process.c). */
#include "phantom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_process.h"

/* wit-bindgen's bindings link an object carrying the world's type; phantom
 * build and phantom componentize embed that type themselves, so the object
 * is not needed and this stands in for its symbol. */
void __component_type_object_force_link_device_process(void) {}

static device_process_status_t status;
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

/* A call begins: a resume starts idle (phantom_on_resume asks again with
   phantom_busy() to go on); any other event leaves a busy process busy, so
   the work it asked to go on with is resumed after it. */
static void begin_call(bool resume) {
  if (resume || status.tag != PHANTOM_OS_TYPES_STATUS_BUSY) status.tag = PHANTOM_OS_TYPES_STATUS_IDLE;
}

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
  device_process_list_u8_t list = {(uint8_t *)bytes, len};
  phantom_os_console_write(&list);
}

int64_t phantom_send(const char *to, const void *data, size_t len) {
  device_process_string_t name = {(uint8_t *)to, strlen(to)};
  device_process_list_u8_t bytes = {(uint8_t *)data, len};
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
  device_process_string_t s;
  phantom_os_process_name(&s);
  char *out = malloc(s.len + 1);
  if (out) {
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
  }
  device_process_string_free(&s);
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

static phantom_file_t *handed;
static size_t nhanded;

size_t phantom_file_count(void) { return nhanded; }

const phantom_file_t *phantom_file(size_t i) { return i < nhanded ? &handed[i] : NULL; }

const phantom_file_t *phantom_file_named(const char *name) {
  for (size_t i = 0; i < nhanded; i++)
    if (strcmp(handed[i].name, name) == 0) return &handed[i];
  return NULL;
}

void phantom_files_free(void) {
  for (size_t i = 0; i < nhanded; i++) {
    free((void *)handed[i].name);
    free((void *)handed[i].data);
  }
  free(handed);
  handed = NULL;
  nhanded = 0;
}

bool exports_device_process_init(device_process_list_string_t *args,
                                     device_process_list_file_t *files,
                                     device_process_status_t *ret,
                                     device_process_string_t *err) {
  int argc = (int)args->len + 1;
  char **argv = calloc((size_t)argc + 1, sizeof(char *));
  if (!argv) abort();
  argv[0] = phantom_process_name();
  for (size_t i = 0; i < args->len; i++) argv[i + 1] = dup_n(args->ptr[i].ptr, args->ptr[i].len);
  device_process_list_string_free(args);
  if (files->len) {
    handed = calloc(files->len, sizeof *handed);
    if (!handed) abort();
    for (size_t i = 0; i < files->len; i++) {
      handed[i].name = dup_n(files->ptr[i].name.ptr, files->ptr[i].name.len);
      handed[i].data = (const uint8_t *)dup_n(files->ptr[i].data.ptr, files->ptr[i].data.len);
      handed[i].len = files->ptr[i].data.len;
    }
    nhanded = files->len;
  }
  device_process_list_file_free(files);
  status.tag = PHANTOM_OS_TYPES_STATUS_IDLE;
  int rc = phantom_init(argc, argv);
  flush();
  if (rc != 0) {
    device_process_string_dup(err, init_error ? init_error : "phantom_init failed");
    return false;
  }
  *ret = status;
  return true;
}

void exports_device_process_handle(device_process_event_t *event,
                                       device_process_status_t *ret) {
  begin_call(event->tag == PHANTOM_OS_TYPES_EVENT_RESUME);
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
  device_process_event_free(event);
  flush();
  *ret = status;
}

void exports_device_process_handle_message(device_process_message_t *message,
                                              device_process_status_t *ret) {
  begin_call(false);
  char *sender = dup_n(message->sender.ptr, message->sender.len);
  char *data = dup_n(message->data.ptr, message->data.len);
  phantom_on_message(sender, message->id, data, message->data.len);
  free(sender);
  free(data);
  device_process_message_free(message);
  flush();
  *ret = status;
}

/* ---- devices ---- */

__attribute__((weak)) void phantom_on_gpio_edge(uint32_t pin, bool high, uint64_t time_ns) {
  (void)pin;
  (void)high;
  (void)time_ns;
}

__attribute__((weak)) void phantom_on_device_event(const phantom_devices_events_device_event_t *event) {
  if (event->tag == PHANTOM_DEVICES_EVENTS_DEVICE_EVENT_GPIO_EDGE) {
    const phantom_devices_events_gpio_edge_t *e = &event->val.gpio_edge;
    phantom_on_gpio_edge(e->pin, e->level == PHANTOM_DEVICES_GPIO_LEVEL_HIGH, e->time_ns);
  }
}

void exports_device_process_handle_device_event(device_process_device_event_t *event,
                                                device_process_status_t *ret) {
  begin_call(false);
  phantom_on_device_event(event);
  device_process_device_event_free(event);
  flush();
  *ret = status;
}

static int gpio_error(phantom_devices_gpio_gpio_error_t e) {
  switch (e) {
    case PHANTOM_DEVICES_GPIO_GPIO_ERROR_NOT_GRANTED: return PHANTOM_E_NOT_GRANTED;
    case PHANTOM_DEVICES_GPIO_GPIO_ERROR_MODE_NOT_ALLOWED: return PHANTOM_E_NOT_ALLOWED;
    case PHANTOM_DEVICES_GPIO_GPIO_ERROR_NOT_OPEN: return PHANTOM_E_NOT_OPEN;
    case PHANTOM_DEVICES_GPIO_GPIO_ERROR_DEVICE_LOST: return PHANTOM_E_DEVICE_LOST;
    default: return PHANTOM_E_OTHER;
  }
}

int64_t phantom_gpio_open(const char *name, int mode, bool initial_high) {
  device_process_string_t n = {(uint8_t *)name, strlen(name)};
  phantom_devices_gpio_pin_t pin;
  phantom_devices_gpio_gpio_error_t err;
  if (mode < PHANTOM_PIN_INPUT || mode > PHANTOM_PIN_OUTPUT_OPEN_DRAIN) return PHANTOM_E_NOT_ALLOWED;
  if (phantom_devices_gpio_open(&n, (phantom_devices_gpio_pin_mode_t)mode,
                                initial_high ? PHANTOM_DEVICES_GPIO_LEVEL_HIGH
                                             : PHANTOM_DEVICES_GPIO_LEVEL_LOW,
                                &pin, &err))
    return pin;
  return gpio_error(err);
}

int phantom_gpio_set(uint32_t pin, bool high) {
  phantom_devices_gpio_gpio_error_t err;
  if (phantom_devices_gpio_set_level(
          pin, high ? PHANTOM_DEVICES_GPIO_LEVEL_HIGH : PHANTOM_DEVICES_GPIO_LEVEL_LOW, &err))
    return 0;
  return gpio_error(err);
}

int phantom_gpio_get(uint32_t pin) {
  phantom_devices_gpio_level_t level;
  phantom_devices_gpio_gpio_error_t err;
  if (phantom_devices_gpio_get_level(pin, &level, &err))
    return level == PHANTOM_DEVICES_GPIO_LEVEL_HIGH ? 1 : 0;
  return gpio_error(err);
}

int phantom_gpio_watch(uint32_t pin, int edges) {
  phantom_devices_gpio_edge_t edge;
  phantom_devices_gpio_gpio_error_t err;
  switch (edges) {
    case 0: break;
    case PHANTOM_EDGE_RISING: edge = PHANTOM_DEVICES_GPIO_EDGE_RISING; break;
    case PHANTOM_EDGE_FALLING: edge = PHANTOM_DEVICES_GPIO_EDGE_FALLING; break;
    case PHANTOM_EDGE_BOTH: edge = PHANTOM_DEVICES_GPIO_EDGE_BOTH; break;
    default: return PHANTOM_E_NOT_ALLOWED;
  }
  if (phantom_devices_gpio_watch(pin, edges ? &edge : NULL, &err)) return 0;
  return gpio_error(err);
}

bool phantom_gpio_close(uint32_t pin) { return phantom_devices_gpio_close(pin); }

static int i2c_error(const phantom_devices_i2c_i2c_error_t *e) {
  switch (e->tag) {
    case PHANTOM_DEVICES_I2C_I2C_ERROR_NOT_GRANTED: return PHANTOM_E_NOT_GRANTED;
    case PHANTOM_DEVICES_I2C_I2C_ERROR_ADDRESS_NOT_ALLOWED: return PHANTOM_E_NOT_ALLOWED;
    case PHANTOM_DEVICES_I2C_I2C_ERROR_NOT_OPEN: return PHANTOM_E_NOT_OPEN;
    case PHANTOM_DEVICES_I2C_I2C_ERROR_DEVICE_LOST: return PHANTOM_E_DEVICE_LOST;
    case PHANTOM_DEVICES_I2C_I2C_ERROR_NO_ACKNOWLEDGE: return PHANTOM_E_NO_ACK;
    case PHANTOM_DEVICES_I2C_I2C_ERROR_BUS:
    case PHANTOM_DEVICES_I2C_I2C_ERROR_ARBITRATION_LOSS:
    case PHANTOM_DEVICES_I2C_I2C_ERROR_OVERRUN: return PHANTOM_E_BUS;
    default: return PHANTOM_E_OTHER;
  }
}

int64_t phantom_i2c_open(const char *name) {
  device_process_string_t n = {(uint8_t *)name, strlen(name)};
  phantom_devices_i2c_bus_t bus;
  phantom_devices_i2c_i2c_error_t err;
  if (phantom_devices_i2c_open(&n, &bus, &err)) return bus;
  return i2c_error(&err);
}

int phantom_i2c_write(uint32_t bus, uint16_t address, const void *data, size_t len) {
  device_process_list_u8_t bytes = {(uint8_t *)data, len};
  phantom_devices_i2c_i2c_error_t err;
  if (phantom_devices_i2c_write(bus, address, &bytes, &err)) return 0;
  return i2c_error(&err);
}

/* Copies what came back into `buf` (exactly `len` bytes). */
static int take(device_process_list_u8_t *got, void *buf, size_t len) {
  int rc = got->len == len ? 0 : PHANTOM_E_OTHER;
  if (rc == 0 && len) memcpy(buf, got->ptr, len);
  device_process_list_u8_free(got);
  return rc;
}

int phantom_i2c_read(uint32_t bus, uint16_t address, void *buf, size_t len) {
  device_process_list_u8_t got;
  phantom_devices_i2c_i2c_error_t err;
  if (phantom_devices_i2c_read(bus, address, (uint32_t)len, &got, &err)) return take(&got, buf, len);
  return i2c_error(&err);
}

int phantom_i2c_write_read(uint32_t bus, uint16_t address, const void *out, size_t out_len, void *in,
                           size_t in_len) {
  device_process_list_u8_t bytes = {(uint8_t *)out, out_len};
  device_process_list_u8_t got;
  phantom_devices_i2c_i2c_error_t err;
  if (phantom_devices_i2c_write_read(bus, address, &bytes, (uint32_t)in_len, &got, &err))
    return take(&got, in, in_len);
  return i2c_error(&err);
}

bool phantom_i2c_close(uint32_t bus) { return phantom_devices_i2c_close(bus); }
