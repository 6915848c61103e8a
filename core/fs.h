/* fs: files written so that a crash at any moment leaves either the old
 * content or the new, never a torn file (temp file, fsync, rename, fsync of
 * the folder), plus the small file helpers every module needs. */
#ifndef CORE_FS_H
#define CORE_FS_H

#include <stddef.h>

#include "core/error.h"

/* A path that exists and is neither a regular file, a symlink to one, nor a
 * folder (a device such as /dev/null, a FIFO, /dev/stdout on a pipe) is never
 * replaced: its bytes are written into it in place (not atomic). A symlink to a
 * regular file is followed (the file is replaced, the link kept). A folder is
 * refused. This holds for the functions below and for writers built on
 * fs_tmp_name + fs_commit_tmp. */
int fs_write_atomic(const char *path, const void *data, size_t len, struct error *err);
/* Same rename trick (readers see old or new, never a torn file) without the
 * fsyncs: for files that may be lost in a power cut but must never be torn. */
int fs_write_replace(const char *path, const void *data, size_t len, struct error *err);

/* For writers that need a file name (GDAL, a seekable stream): a fresh temp
 * file name for writing path, next to it (PATH.tmp.PID.N), or in $TMPDIR when
 * path is written in place. Refuses a folder. */
int fs_tmp_name(const char *path, char *tmp, size_t size, struct error *err);
/* Put the finished, closed temp file at path: rename it there (and fsync the
 * folder when durable), or copy its bytes into a target written in place and
 * remove it. The temp file is removed on failure. */
int fs_commit_tmp(const char *tmp, const char *path, int durable, struct error *err);
/* 1 when path exists and would be written in place (see above). */
int fs_is_in_place(const char *path);

int fs_mkdir_p(const char *path, struct error *err);
/* Read a whole file; *data is NUL-terminated (free with mem_free). A device
 * (/dev/zero, which would never end) is refused. */
int fs_read_all(const char *path, char **data, size_t *len, struct error *err);
int fs_exists(const char *path);
int fs_is_dir(const char *path);
/* Remove a file or a folder tree; a missing path is not an error. */
int fs_rm_rf(const char *path, struct error *err);
/* fsync a folder so that a rename or create inside it is durable. */
int fs_sync_dir(const char *path, struct error *err);
/* Take an exclusive flock on path (created if missing) without waiting.
 * Returns the open fd (the lock lives as long as it, and as long as any
 * child that inherited it when `inherit`), FS_LOCK_BUSY if another holds
 * it, or -1 with err set. */
enum { FS_LOCK_BUSY = -2 };
int fs_trylock(const char *path, int inherit, struct error *err);

/* Absolute, normalized path (the file itself need not exist, its folder must). */
char *fs_abspath(const char *path);

#endif
