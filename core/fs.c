#include "core/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
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

/* Output targets. A user may name a device (/dev/null), a FIFO or a symlink
 * (/dev/stdout) as an output; renaming a temp file onto such a path would
 * replace the device or the link with a regular file (as root, /dev/null
 * itself). So only a missing path or a regular file is replaced by rename; a
 * symlink is followed first, and anything else but a folder is written into
 * in place. */
enum target { TARGET_RENAME, TARGET_IN_PLACE };

/* Classify path; *real is where a rename must go (a symlink's resolved target). */
static int target_of(const char *path, char *real, size_t size, enum target *kind,
		     struct error *err)
{
	struct stat st;
	if (snprintf(real, size, "%s", path) >= (int)size)
		return error_set(err, "%s: path too long", path);
	*kind = TARGET_RENAME;
	if (lstat(path, &st) < 0)
		return 0; /* missing: created by the rename */
	if (S_ISLNK(st.st_mode)) {
		char resolved[PATH_MAX];
		if (stat(path, &st) < 0 || !realpath(path, resolved))
			return 0; /* dangling link: replaced, as before */
		if (S_ISREG(st.st_mode) && strlen(resolved) < size && resolved[0] == '/') {
			snprintf(real, size, "%s", resolved);
			return 0;
		}
	}
	if (S_ISDIR(st.st_mode))
		return error_set(err, "%s: is a folder, not a file: name a file to write", path);
	if (!S_ISREG(st.st_mode))
		*kind = TARGET_IN_PLACE;
	return 0;
}

int fs_is_in_place(const char *path)
{
	char real[PATH_MAX];
	enum target kind = TARGET_RENAME;
	struct error ignored;
	return target_of(path, real, sizeof(real), &kind, &ignored) == 0 &&
	       kind == TARGET_IN_PLACE;
}

static int write_fd_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write into an existing device, FIFO or pipe: no temp file, no rename.
 * O_TRUNC does nothing on these, and a FIFO waits for its reader. */
static int write_in_place(const char *path, const void *data, size_t len, struct error *err)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return error_errno(err, "%s: cannot open for writing", path);
	if (write_fd_all(fd, data, len) < 0) {
		error_errno(err, "%s: write", path);
		close(fd);
		return -1;
	}
	if (close(fd) < 0)
		return error_errno(err, "%s: close", path);
	return 0;
}

/* The temp file beside real, the path a rename goes to. */
static int tmp_beside(const char *path, const char *real, char *tmp, size_t size,
		      struct error *err)
{
	static atomic_ulong counter;
	if (snprintf(tmp, size, "%s.tmp.%ld.%lu", real, (long)getpid(),
		     atomic_fetch_add(&counter, 1)) >= (int)size)
		return error_set(err, "%s: path too long", path);
	return 0;
}

/* Rename tmp onto real (path as the user named it, for messages); tmp is
 * removed when that fails. */
static int rename_into_place(const char *tmp, const char *path, const char *real, int durable,
			     struct error *err)
{
	if (rename(tmp, real) < 0) {
		error_errno(err, "%s: cannot rename the temp file %s into place", path, tmp);
		unlink(tmp);
		return -1;
	}
	if (!durable)
		return 0;
	char dir[PATH_MAX];
	dir_of(real, dir, sizeof(dir));
	return fs_sync_dir(dir, err);
}

int fs_tmp_name(const char *path, char *tmp, size_t size, struct error *err)
{
	char real[PATH_MAX];
	enum target kind = TARGET_RENAME;
	if (target_of(path, real, sizeof(real), &kind, err) < 0)
		return -1;
	if (kind == TARGET_IN_PLACE) {
		/* The target's folder (/dev) may not be writable: use $TMPDIR. */
		const char *dir = getenv("TMPDIR");
		if (!dir || !*dir)
			dir = "/tmp";
		if (snprintf(tmp, size, "%s/cairn-out.XXXXXX", dir) >= (int)size)
			return error_set(err, "%s: temp file path too long", path);
		int fd = mkstemp(tmp);
		if (fd < 0)
			return error_errno(err, "%s: cannot create a temp file in %s", path, dir);
		close(fd);
		return 0;
	}
	return tmp_beside(path, real, tmp, size, err);
}

static int copy_in_place(const char *tmp, const char *path, struct error *err)
{
	int in = open(tmp, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return error_errno(err, "%s: cannot reopen the temp file %s", path, tmp);
	int out = open(path, O_WRONLY | O_CLOEXEC);
	if (out < 0) {
		error_errno(err, "%s: cannot open for writing", path);
		close(in);
		return -1;
	}
	char buf[1 << 16];
	ssize_t n;
	int rc = 0;
	while (rc == 0 && (n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = error_errno(err, "%s: reading the temp file %s", path, tmp);
		else if (write_fd_all(out, buf, (size_t)n) < 0)
			rc = error_errno(err, "%s: write", path);
	}
	close(in);
	if (close(out) < 0 && rc == 0)
		rc = error_errno(err, "%s: close", path);
	return rc;
}

int fs_commit_tmp(const char *tmp, const char *path, int durable, struct error *err)
{
	char real[PATH_MAX];
	enum target kind = TARGET_RENAME;
	if (target_of(path, real, sizeof(real), &kind, err) < 0) {
		unlink(tmp);
		return -1;
	}
	if (kind == TARGET_RENAME)
		return rename_into_place(tmp, path, real, durable, err);
	int rc = copy_in_place(tmp, path, err);
	unlink(tmp);
	return rc;
}

/* durable: 0 no fsync, else fsync of the file and of the folder. The target
 * is looked at once (every task marker is written here). */
static int write_renamed(const char *path, const void *data, size_t len, int durable,
			 struct error *err)
{
	char real[PATH_MAX], tmp[PATH_MAX];
	enum target kind = TARGET_RENAME;
	if (target_of(path, real, sizeof(real), &kind, err) < 0)
		return -1;
	if (kind == TARGET_IN_PLACE)
		return write_in_place(path, data, len, err);
	if (tmp_beside(path, real, tmp, sizeof(tmp), err) < 0)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return error_errno(err, "%s: cannot create (temp file %s)", path, tmp);
	if (write_fd_all(fd, data, len) < 0) {
		error_errno(err, "%s: write", path);
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (durable && fsync(fd) < 0) {
		error_errno(err, "%s: fsync", path);
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0) {
		error_errno(err, "%s: close", path);
		unlink(tmp);
		return -1;
	}
	return rename_into_place(tmp, path, real, durable, err);
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
	struct stat st; /* a device (/dev/zero) would be read forever */
	if (fstat(fileno(f), &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
		fclose(f);
		return error_set(err, "%s: a device, not a file: give a file", path);
	}
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
