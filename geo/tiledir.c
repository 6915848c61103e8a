#include "geo/tiledir.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

static int is_number(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static int cmp_tile(const void *a, const void *b)
{
	const struct tile *p = a, *q = b;
	if (p->y != q->y)
		return p->y < q->y ? -1 : 1;
	return p->x < q->x ? -1 : p->x > q->x;
}

static int find_zoom(const char *dir, int *z, struct error *err)
{
	DIR *d = opendir(dir);
	if (!d)
		return error_errno(err, "%s: cannot open folder", dir);
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d))) {
		if (!is_number(e->d_name))
			continue;
		if (*z >= 0) {
			rc = error_set(err, "%s: several zoom folders (%d, %s); pick one with --zoom",
				       dir, *z, e->d_name);
			break;
		}
		*z = atoi(e->d_name);
	}
	closedir(d);
	if (rc == 0 && *z < 0)
		rc = error_set(err, "%s: no zoom folder (want DIR/Z/X/Y files)", dir);
	return rc;
}

int tiledir_list(const char *dir, const char *ext, int *z, struct tile **tiles, size_t *n,
		 struct error *err)
{
	*tiles = NULL;
	*n = 0;
	if (*z < 0 && find_zoom(dir, z, err) < 0)
		return -1;
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/%d", dir, *z) >= (int)sizeof(path))
		return error_set(err, "%s: path too long", dir);
	DIR *dz = opendir(path);
	if (!dz)
		return error_errno(err, "%s: cannot open folder", path);
	size_t cap = 0, elen = strlen(ext);
	struct dirent *ex;
	int rc = 0;
	while (rc == 0 && (ex = readdir(dz))) {
		if (!is_number(ex->d_name))
			continue;
		char px[4400];
		snprintf(px, sizeof(px), "%s/%s", path, ex->d_name);
		DIR *dx = opendir(px);
		if (!dx)
			continue;
		struct dirent *ey;
		while (rc == 0 && (ey = readdir(dx))) {
			size_t l = strlen(ey->d_name);
			if (l < elen + 2 || ey->d_name[l - elen - 1] != '.' ||
			    strcmp(ey->d_name + l - elen, ext) != 0)
				continue;
			if (*n == cap) {
				cap = cap ? cap * 2 : 256;
				struct tile *nt = mem_realloc(*tiles, cap * sizeof(*nt));
				if (!nt) {
					rc = error_set(err, "out of memory listing %s", path);
					break;
				}
				*tiles = nt;
			}
			struct tile *t = &(*tiles)[(*n)++];
			t->z = *z;
			t->x = (uint32_t)strtoul(ex->d_name, NULL, 10);
			t->y = (uint32_t)strtoul(ey->d_name, NULL, 10);
		}
		closedir(dx);
	}
	closedir(dz);
	if (rc == 0 && *n == 0)
		rc = error_set(err, "%s: no .%s tiles", path, ext);
	if (rc < 0) {
		mem_free(*tiles);
		*tiles = NULL;
		*n = 0;
		return -1;
	}
	qsort(*tiles, *n, sizeof(**tiles), cmp_tile);
	return 0;
}
