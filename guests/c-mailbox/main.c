/* c-mailbox: messages in C (phantom.h: phantom_on_message, phantom_send).
 *
 * Every message it gets is kept in a malloc'd list and printed as
 *   got <sender, or - from outside> <id> <text>
 * Console lines:
 *   send <to> <text>   sends <text> to process <to>: `sent <id>` or
 *                      `send error <code>` (-1 bad name, -2 too large,
 *                      -3 too many in one call)
 *   list               `count <n>: <text> <text> ...`, what it has kept
 * Nothing here is about persistence: the list survives kill -9 because the
 * host checkpoints the heap, and the journal delivers each message once.
 */
#include "phantom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msg {
  char *text;
  struct msg *next;
};

static struct msg *head;
static struct msg **tail = &head;
static unsigned count;

int phantom_init(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return 0;
}

void phantom_on_message(const char *sender, uint64_t id, const void *data, size_t len) {
  struct msg *m = malloc(sizeof *m);
  if (!m) abort();
  m->text = malloc(len + 1);
  if (!m->text) abort();
  memcpy(m->text, data, len);
  m->text[len] = 0;
  m->next = NULL;
  *tail = m;
  tail = &m->next;
  count++;
  printf("got %s %llu %s\n", sender[0] ? sender : "-", (unsigned long long)id, m->text);
}

void phantom_on_line(const char *line, size_t len) {
  (void)len;
  if (strncmp(line, "send ", 5) == 0) {
    const char *to = line + 5;
    const char *space = strchr(to, ' ');
    if (!space) {
      printf("usage: send <to> <text>\n");
      return;
    }
    char name[256];
    size_t n = (size_t)(space - to);
    if (n >= sizeof name) n = sizeof name - 1;
    memcpy(name, to, n);
    name[n] = 0;
    int64_t id = phantom_send(name, space + 1, strlen(space + 1));
    if (id < 0)
      printf("send error %lld\n", (long long)id);
    else
      printf("sent %lld\n", (long long)id);
  } else if (strcmp(line, "list") == 0) {
    printf("count %u:", count);
    for (struct msg *m = head; m; m = m->next) printf(" %s", m->text);
    printf("\n");
  }
}
