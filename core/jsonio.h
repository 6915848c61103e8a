/* jsonio: reading and atomically writing JSON files with jansson. */
#ifndef CORE_JSONIO_H
#define CORE_JSONIO_H

#include <jansson.h>

#include "core/error.h"

/* Parse a JSON file; NULL with a message naming file, line and column. */
json_t *jsonio_load(const char *path, struct error *err);
/* Write compactly-indented JSON through fs_write_atomic. */
int jsonio_write_atomic(const char *path, const json_t *j, struct error *err);
/* Same without fsync (fs_write_replace). */
int jsonio_write_replace(const char *path, const json_t *j, struct error *err);

/* Small getters that tolerate a missing key or a wrong type. */
const char *jsonio_str(const json_t *obj, const char *key, const char *dflt);
long long jsonio_int(const json_t *obj, const char *key, long long dflt);
double jsonio_num(const json_t *obj, const char *key, double dflt);

#endif
