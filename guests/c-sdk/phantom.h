/* phantom.h: write a Phantom persistent process in C.
 *
 *   your functions                     phantom.c (this SDK)            the host
 *   phantom_init(argc, argv)   <-- init export (once, at spawn) <-- phantom spawn
 *   phantom_on_timer(id)       <-- handle export (every event)  <-- timers,
 *   phantom_on_line(line, len)                                      console lines
 *   phantom_on_message(...)    <-- handle-message export        <-- phantom send,
 *   phantom_send(to, ...)      --> messages import              --> other processes
 *   phantom_on_gpio_edge(...)  <-- handle-device-event export   <-- granted devices
 *   phantom_gpio_*, phantom_i2c_* --> phantom:devices imports   --> (devices.toml)
 *   printf, malloc, clock_gettime, rand ... (wasi-libc, through WASI 0.2)
 *
 * There is no persistence code to write: the host checkpoints the whole
 * linear memory (globals, the heap, stdio buffers) and the WebAssembly
 * globals between calls, and restores them after a restart or kill -9.
 * phantom_init runs once, when the process is spawned, never on restore.
 * Output of printf is flushed after every call.
 *
 * Only phantom_init is required; the handlers have empty defaults.
 * Build with `phantom build <dir>` (see README, "Writing a guest").
 */
#ifndef PHANTOM_H
#define PHANTOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The wit-bindgen bindings: the phantom:devices interfaces not wrapped
 * here (serial, display, spi, sensor) are called through them directly,
 * e.g. phantom_devices_sensor_read(...). */
#include "device_process.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Required. Creates the process from its arguments (argv[0] is the process
 * name; the strings stay valid for the process's life). Return 0, or
 * non-zero after phantom_fail("why") to refuse the spawn. */
int phantom_init(int argc, char **argv);

/* The files handed to `phantom spawn`: each --file in the order given,
 * then the files of --files DIR sorted by name (names are unique):
 * readable in phantom_init and after (they are in the process's
 * memory, so they persist like everything else; the host keeps no other
 * copy). `data` is also NUL-terminated. phantom_files_free() gives the
 * memory back once they are no longer needed. */
typedef struct {
  const char *name;
  const uint8_t *data;
  size_t len;
} phantom_file_t;
size_t phantom_file_count(void);
const phantom_file_t *phantom_file(size_t i);                /* NULL past the end */
const phantom_file_t *phantom_file_named(const char *name);  /* NULL if not handed */
void phantom_files_free(void);

/* Optional handlers. */
void phantom_on_timer(uint32_t timer);               /* a timer fired */
void phantom_on_line(const char *line, size_t len);  /* a console line (NUL-terminated, no newline) */
void phantom_on_closed(void);                        /* console input ended */
void phantom_on_resume(void);                        /* after phantom_busy(): the next slice */
/* A message arrived, exactly once: from process `sender` (empty, "", for
 * one from outside: `phantom send`), with the sender's id for it, and its
 * bytes (`data` is also NUL-terminated; valid during the call only). */
void phantom_on_message(const char *sender, uint64_t id, const void *data, size_t len);

/* What the process wants after this call (the default is idle). */
void phantom_busy(void);         /* call phantom_on_resume again soon (events that come
                                    in between keep it asked; phantom_on_resume asks again
                                    with phantom_busy() to go on after its slice) */
void phantom_exit(int code);     /* finish, with this exit code */
void phantom_fail(const char *message); /* phantom_init's error message */

/* Timers: a positive id, or -1 (period below 1 ms) or -2 (too many timers). */
int64_t phantom_timer_periodic_ms(uint64_t period_ms);
int64_t phantom_timer_once_ms(uint64_t delay_ms);
bool phantom_timer_cancel(uint32_t timer);

/* Messages: sends `len` bytes to process `to` of the same data directory,
 * delivered exactly once (when this call's output is released). Returns
 * the message's id (> 0), or -1 (`to` cannot be a process name), -2 (over
 * 1 MiB) or -3 (this call already sent 1024). A receiver that does not
 * exist or takes no messages is reported by the host, not here. */
int64_t phantom_send(const char *to, const void *data, size_t len);

/* Devices, granted per process by its manifest (`phantom spawn --devices
 * devices.toml`, e.g. `gpio.bell = { pin = "sim:0/4", modes = ["input"] }`),
 * each opened by its grant's name. An open returns a handle >= 1, which
 * stays valid across restores (the host opens the device again and puts
 * back what was set), or a negative error; the other calls return 0 (or a
 * level) or a negative error. A component that uses a device interface
 * its manifest grants nothing of is refused at spawn. */
#define PHANTOM_E_NOT_GRANTED -1 /* no grant of that name: nothing happened */
#define PHANTOM_E_NOT_ALLOWED -2 /* the grant does not allow that mode or address */
#define PHANTOM_E_NOT_OPEN -3    /* no open device has that handle */
#define PHANTOM_E_DEVICE_LOST -4 /* gone (after a restore, or unplugged) */
#define PHANTOM_E_OTHER -5       /* the device failed (the host says why) */
#define PHANTOM_E_BUS -6         /* I2C: bus error, arbitration loss, overrun */
#define PHANTOM_E_NO_ACK -7      /* I2C: no acknowledge */

/* GPIO pins. */
#define PHANTOM_PIN_INPUT 0
#define PHANTOM_PIN_INPUT_PULL_UP 1
#define PHANTOM_PIN_INPUT_PULL_DOWN 2
#define PHANTOM_PIN_OUTPUT 3
#define PHANTOM_PIN_OUTPUT_OPEN_DRAIN 4
#define PHANTOM_EDGE_RISING 1
#define PHANTOM_EDGE_FALLING 2
#define PHANTOM_EDGE_BOTH 3
int64_t phantom_gpio_open(const char *name, int mode, bool initial_high);
int phantom_gpio_set(uint32_t pin, bool high);   /* an output's level (kept across restores) */
int phantom_gpio_get(uint32_t pin);              /* 1 high, 0 low (an input's is journaled) */
int phantom_gpio_watch(uint32_t pin, int edges); /* PHANTOM_EDGE_*, or 0 to stop */
bool phantom_gpio_close(uint32_t pin);

/* I2C buses: 7-bit addresses, each allowed by the grant. */
int64_t phantom_i2c_open(const char *name);
int phantom_i2c_write(uint32_t bus, uint16_t address, const void *data, size_t len);
int phantom_i2c_read(uint32_t bus, uint16_t address, void *buf, size_t len);
int phantom_i2c_write_read(uint32_t bus, uint16_t address, const void *out, size_t out_len,
                           void *in, size_t in_len);
bool phantom_i2c_close(uint32_t bus);

/* Device events, each delivered once. A watched pin changed level: */
void phantom_on_gpio_edge(uint32_t pin, bool high, uint64_t time_ns);
/* Every device event (also serial bytes and sensor samples); the default
 * passes GPIO edges to phantom_on_gpio_edge. */
void phantom_on_device_event(const phantom_devices_events_device_event_t *event);

/* The console, without stdio (printf works too). */
void phantom_write(const void *bytes, size_t len);

/* The process. */
char *phantom_process_name(void);        /* malloc'd; free it */
uint64_t phantom_restore_count(void);    /* restores so far */
uint64_t phantom_checkpoint_id(void);
void phantom_request_checkpoint(void);   /* checkpoint once this call returns */

#ifdef __cplusplus
}
#endif

#endif
