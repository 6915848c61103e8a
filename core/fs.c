#include "core/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/mem.h"

int fs_sync_dir(const char *path, struct error *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return error_errno(err, "%s: cannot open folder", path);
	int rc = fsync(fd);
	close(fd);
	if (rc < 0 && errno != EINVAL)
		return error_errno(err, "%s: fsync", path);
	return 0;
}

static void dir_of(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, size, ".");
	else if (slash == path)
		snprintf(dir, size, "/");
	else
		snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

/* durable: 0 no fsync, else fsync of the file and of the folder. */
static int write_renamed(const char *path, const void *data, size_t len, int durable,
			 struct error *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return error_set(err, "%s: path too long", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return error_errno(err, "%s: cannot create", tmp);
	const char *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t n = write(fd, p, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			error_errno(err, "%s: write", tmp);
			close(fd);
			unlink(tmp);
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	if (durable && fsync(fd) < 0) {
		error_errno(err, "%s: fsync", tmp);
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0) {
		error_errno(err, "%s: close", tmp);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		error_errno(err, "%s: rename to %s", tmp, path);
		unlink(tmp);
		return -1;
	}
	if (!durable)
		return 0;
	char dir[PATH_MAX];
	dir_of(path, dir, sizeof(dir));
	return fs_sync_dir(dir, err);
}

int fs_write_atomic(const char *path, const void *data, size_t len, struct error *err)
{
	return write_renamed(path, data, len, 1, err);
}


int fs_write_replace(const char *path, const void *data, size_t len, struct error *err)
{
	return write_renamed(path, data, len, 0, err);
}

int fs_mkdir_p(const char *path, struct error *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return error_set(err, "%s: path too long", path);
	/* Common case first: the parent exists. */
	if (mkdir(tmp, 0755) == 0 || (errno == EEXIST && fs_is_dir(tmp)))
		return 0;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return error_errno(err, "%s: cannot create folder", tmp);
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return error_errno(err, "%s: cannot create folder", tmp);
	if (!fs_is_dir(tmp))
		return error_set(err, "%s: exists and is not a folder", tmp);
	return 0;
}

int fs_read_all(const char *path, char **data, size_t *len, struct error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return error_errno(err, "%s: cannot open", path);
	struct buf b = BUF_INIT;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		buf_release(&b);
		return error_set(err, "%s: read error", path);
	}
	if (b.failed) {
		buf_release(&b);
		return error_set(err, "%s: out of memory reading file", path);
	}
	if (len)
		*len = b.len;
	*data = buf_detach(&b);
	if (!*data)
		return error_set(err, "%s: out of memory reading file", path);
	return 0;
}

int fs_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

int fs_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_rm_rf(const char *path, struct error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : error_errno(err, "%s: stat", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return error_errno(err, "%s: cannot remove", path);
		return 0;
	}
	DIR *d = opendir(path);
	if (!d)
		return error_errno(err, "%s: cannot open folder", path);
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char child[PATH_MAX];
		if (snprintf(child, sizeof(child), "%s/%s", path, e->d_name) >= (int)sizeof(child))
			rc = error_set(err, "%s/%s: path too long", path, e->d_name);
		else
			rc = fs_rm_rf(child, err);
	}
	closedir(d);
	if (rc == 0 && rmdir(path) < 0 && errno != ENOENT)
		return error_errno(err, "%s: cannot remove folder", path);
	return rc;
}

char *fs_abspath(const char *path)
{
	char resolved[PATH_MAX];
	if (realpath(path, resolved))
		return mem_strdup(resolved);
	/* The last part may not exist yet: resolve its folder. */
	char dir[PATH_MAX];
	dir_of(path, dir, sizeof(dir));
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	if (!realpath(dir, resolved))
		return NULL;
	struct buf b = BUF_INIT;
	buf_addf(&b, "%s/%s", strcmp(resolved, "/") ? resolved : "", base);
	if (b.failed) {
		buf_release(&b);
		return NULL;
	}
	return buf_detach(&b);
}

int fs_trylock(const char *path, int inherit, struct error *err)
{
	int fd = open(path, O_RDWR | O_CREAT | (inherit ? 0 : O_CLOEXEC), 0644);
	if (fd < 0)
		return error_errno(err, "%s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int busy = errno == EWOULDBLOCK;
		if (!busy)
			error_errno(err, "%s: lock", path);
		close(fd);
		return busy ? FS_LOCK_BUSY : -1;
	}
	return fd;
}
