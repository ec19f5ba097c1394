/* c-kv: a key-value store driven by console lines, kept in a malloc'd hash
 * table that grows; nothing but plain C data structures, which persist.
 *
 *   set <key> <value>   ->  ok
 *   get <key>           ->  <key>=<value>  |  <key> not found
 *   del <key>           ->  deleted <key>  |  <key> not found
 *   count               ->  count=<entries>
 *   dump                ->  every entry, sorted by key, then `end`
 *
 * Files handed to `phantom spawn` (--file seed.kv) seed the store: each
 * line `key=value` is set (the SDK's phantom_file_*). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phantom.h"

struct entry {
  char *key, *value;
  struct entry *next;
};

static struct entry **buckets;
static size_t nbuckets, entries;

static size_t hash(const char *s) {
  size_t h = 1469598103934665603ull;
  while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
  return h;
}

static void grow(void) {
  size_t n = nbuckets ? nbuckets * 2 : 8;
  struct entry **b = calloc(n, sizeof *b);
  if (!b) return; /* longer chains, still correct */
  for (size_t i = 0; i < nbuckets; i++)
    for (struct entry *e = buckets[i], *next; e; e = next) {
      next = e->next;
      size_t j = hash(e->key) % n;
      e->next = b[j];
      b[j] = e;
    }
  free(buckets);
  buckets = b;
  nbuckets = n;
}

static struct entry **find(const char *key) {
  struct entry **p = &buckets[hash(key) % nbuckets];
  while (*p && strcmp((*p)->key, key) != 0) p = &(*p)->next;
  return p;
}

static int by_key(const void *a, const void *b) {
  return strcmp((*(struct entry *const *)a)->key, (*(struct entry *const *)b)->key);
}

/* False when memory ran out (the store is as it was). */
static bool set(const char *key, const char *value) {
  char *v = strdup(value);
  if (!v) return false;
  struct entry **p = find(key);
  if (*p) {
    free((*p)->value);
    (*p)->value = v;
    return true;
  }
  struct entry *e = malloc(sizeof *e);
  char *k = strdup(key);
  if (!e || !k) {
    free(e);
    free(k);
    free(v);
    return false;
  }
  e->key = k;
  e->value = v;
  e->next = NULL;
  *p = e;
  if (++entries > nbuckets) grow();
  return true;
}

int phantom_init(int argc, char **argv) {
  (void)argc;
  (void)argv;
  grow();
  for (size_t i = 0; i < phantom_file_count(); i++) {
    const phantom_file_t *f = phantom_file(i);
    char *text = strndup((const char *)f->data, f->len), *save = NULL;
    size_t seeded = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
      char *eq = strchr(line, '=');
      if (!eq || eq == line) continue;
      *eq = 0;
      seeded += set(line, eq + 1);
    }
    printf("seeded %zu from %s\n", seeded, f->name);
    free(text);
  }
  phantom_files_free();
  return 0;
}

void phantom_on_line(const char *line, size_t len) {
  char *copy = strndup(line, len), *save = NULL;
  char *cmd = strtok_r(copy, " ", &save);
  char *key = strtok_r(NULL, " ", &save);
  char *value = strtok_r(NULL, "", &save);
  if (!cmd) {
  } else if (strcmp(cmd, "set") == 0 && key && value) {
    printf(set(key, value) ? "ok\n" : "error: out of memory\n");
  } else if (strcmp(cmd, "get") == 0 && key) {
    struct entry *e = *find(key);
    if (e) printf("%s=%s\n", key, e->value);
    else printf("%s not found\n", key);
  } else if (strcmp(cmd, "del") == 0 && key) {
    struct entry **p = find(key), *e = *p;
    if (e) {
      *p = e->next;
      free(e->key);
      free(e->value);
      free(e);
      entries--;
      printf("deleted %s\n", key);
    } else {
      printf("%s not found\n", key);
    }
  } else if (strcmp(cmd, "count") == 0) {
    printf("count=%zu\n", entries);
  } else if (strcmp(cmd, "dump") == 0) {
    struct entry **all = malloc((entries + 1) * sizeof *all);
    size_t n = 0;
    for (size_t i = 0; i < nbuckets; i++)
      for (struct entry *e = buckets[i]; e; e = e->next) all[n++] = e;
    qsort(all, n, sizeof *all, by_key);
    for (size_t i = 0; i < n; i++) printf("%s=%s\n", all[i]->key, all[i]->value);
    printf("end\n");
    free(all);
  } else {
    printf("error: usage: set <key> <value> | get <key> | del <key> | count | dump\n");
  }
  free(copy);
}
