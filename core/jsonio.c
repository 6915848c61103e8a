#include "core/jsonio.h"

#include <stdlib.h>
#include <string.h>

#include "core/fs.h"
#include "core/mem.h"

json_t *jsonio_load(const char *path, struct error *err)
{
	/* One read() and a parse from memory: json_load_file reads with getc. */
	char *text;
	size_t len;
	if (fs_read_all(path, &text, &len, err) < 0)
		return NULL;
	json_error_t je;
	json_t *j = json_loadb(text, len, 0, &je);
	mem_free(text);
	if (!j) {
		if (je.line <= 0)
			error_set(err, "%s: %s", path, je.text);
		else
			error_set(err, "%s:%d:%d: bad JSON: %s", path, je.line, je.column, je.text);
	}
	return j;
}

static int write_json(const char *path, const json_t *j, int durable, struct error *err)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
	if (!text)
		return error_set(err, "%s: out of memory encoding JSON", path);
	size_t len = strlen(text);
	char *nl = realloc(text, len + 2);
	if (!nl) {
		free(text);
		return error_set(err, "%s: out of memory encoding JSON", path);
	}
	text = nl;
	text[len++] = '\n';
	text[len] = '\0';
	int rc = durable ? fs_write_atomic(path, text, len, err) : fs_write_replace(path, text, len, err);
	free(text);
	return rc;
}

int jsonio_write_atomic(const char *path, const json_t *j, struct error *err)
{
	return write_json(path, j, 1, err);
}

int jsonio_write_replace(const char *path, const json_t *j, struct error *err)
{
	return write_json(path, j, 0, err);
}

const char *jsonio_str(const json_t *obj, const char *key, const char *dflt)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : dflt;
}

long long jsonio_int(const json_t *obj, const char *key, long long dflt)
{
	const json_t *v = json_object_get(obj, key);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (long long)json_real_value(v);
	return dflt;
}

double jsonio_num(const json_t *obj, const char *key, double dflt)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_number(v) ? json_number_value(v) : dflt;
}
