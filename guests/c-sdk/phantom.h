/* phantom.h: write a Phantom persistent process in C.
 *
 *   your functions                     phantom.c (this SDK)            the host
 *   phantom_init(argc, argv)   <-- init export (once, at spawn) <-- phantom spawn
 *   phantom_on_timer(id)       <-- handle export (every event)  <-- timers,
 *   phantom_on_line(line, len)                                      console lines
 *   phantom_on_message(...)    <-- handle-message export        <-- phantom send,
 *   phantom_send(to, ...)      --> messages import              --> other processes
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

#ifdef __cplusplus
extern "C" {
#endif

/* Required. Creates the process from its arguments (argv[0] is the process
 * name; the strings stay valid for the process's life). Return 0, or
 * non-zero after phantom_fail("why") to refuse the spawn. */
int phantom_init(int argc, char **argv);

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
void phantom_busy(void);         /* call phantom_on_resume again soon */
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
