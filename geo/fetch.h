/* fetch: download a set of XYZ tiles with libcurl's multi interface: many
 * transfers in flight over kept-alive connections, a per-host rate limit,
 * retries with exponential backoff and jitter (Retry-After honoured), a
 * stall timeout, and an integrity check (length, decode) before a tile is
 * written atomically and recorded in a manifest that makes reruns free. */
#ifndef GEO_FETCH_H
#define GEO_FETCH_H

#include <signal.h>
#include <stdint.h>

#include "core/error.h"
#include "geo/manifest.h"
#include "geo/tile.h"

enum {
	FETCH_VERIFY_NONE, /* the length only */
	FETCH_VERIFY_FAST, /* PNG CRCs / JPEG markers, GDAL reads the header (raster_check_image_fast) */
	FETCH_VERIFY_FULL, /* all image data decodes (raster_check_image): the default */
	FETCH_VERIFY_GDAL, /* GDAL's driver reads every pixel (raster_check_image_gdal) */
};

struct fetch_opts {
	const char *url;      /* template with {z} {x} {y}; also {-y} (TMS row) and {q} (quadkey) */
	const char *out_dir;  /* tiles go to out_dir/Z/X/Y.EXT */
	const char *ext;      /* NULL: taken from the template ("png" from ".../{y}.png") */
	struct tile_range range;
	int shard_i, shard_n; /* this run does shard i of n of the range (0/1: all) */
	int concurrency;      /* transfers in flight (default 16) */
	double rate;          /* requests per second per host, 0 = no limit */
	int retries;          /* retries per tile after the first attempt (default 5) */
	double backoff;       /* first retry delay in seconds (default 0.5), doubling */
	double backoff_max;   /* cap on one delay (default 30) */
	double max_retry_after; /* longest Retry-After obeyed (default 120 s); longer is capped */
	double stall;         /* abort a transfer that received nothing for this long (default 15 s) */
	double timeout;       /* whole-transfer limit in seconds (default 120) */
	double connect_timeout; /* default 10 s */
	int threads;          /* decode/hash/write workers (default: online CPUs, at most 8) */
	int verify;           /* FETCH_VERIFY_*: how a body is checked before it is written */
	int refetch;          /* the manifest records another source: replace its tiles */
	unsigned long seed;   /* jitter seed */
	volatile sig_atomic_t *stop; /* set from a signal handler: finish cleanly, early */
	/* Called from the fetching thread after every finished tile. */
	void (*on_progress)(void *ctx, uint64_t done, uint64_t total);
	/* Called once, before any transfer, with a line about the folder's
	 * manifest when there is something to say (fetch_manifest_source). */
	void (*on_note)(void *ctx, const char *line);
	void *ctx;
};

void fetch_opts_init(struct fetch_opts *o);

struct fetch_stats {
	uint64_t total;    /* tiles in this shard */
	uint64_t fetched;  /* downloaded and written this run */
	uint64_t cached;   /* valid in the manifest already: not requested */
	uint64_t missing;  /* 404/410: the server has no such tile (recorded, not retried) */
	uint64_t failed;   /* still not fetched after all retries, or a permanent error */
	uint64_t requests; /* HTTP requests made */
	uint64_t retries;  /* of which repeats */
	uint64_t rejected; /* 200 bodies rejected: short, not an image, corrupt */
	uint64_t bytes;    /* tile bytes written */
	double seconds;
	int interrupted;   /* opts.stop was set */
};

struct fetch_failure {
	char *path; /* Z/X/Y.EXT relative to out_dir */
	char *url;
	char *why;
};

struct fetch_result {
	struct fetch_stats stats;
	struct fetch_failure *failures;
	size_t nfailures;
	char manifest[4096]; /* path of the manifest written */
};

/* Returned for the user's bad input: a template that is not a URL or has no
 * file type, more than TILE_MAX_PER_RUN tiles, a folder where the manifest
 * goes. Exit 2, not a failure of the work. */
#define FETCH_EBADINPUT (-2)

/* 0 when the run went through (tiles may still have failed: see stats.failed
 * and failures); FETCH_EBADINPUT (above), or -1 with a message when it could
 * not run at all (out_dir not writable, curl or thread setup failed). */
int fetch_run(const struct fetch_opts *o, struct fetch_result *res, struct error *err);
void fetch_result_release(struct fetch_result *res);

/* The template is a URL: SCHEME://HOST/... with a scheme libcurl speaks (a
 * host may be left out only for file:///...), and {z}, {x} and {y} (or {-y},
 * or {q}). -1 with a message naming the template. */
int fetch_check_url(const char *tmpl, struct error *err);
/* Template expansion; -1 if the template has no {z}, {x} or no {y}/{-y}/{q}. */
int fetch_expand_url(const char *tmpl, const struct tile *t, char *out, size_t size,
		     struct error *err);
/* "png" from "http://h/{z}/{x}/{y}.png?key=1"; -1 when there is none. */
int fetch_ext_from_template(const char *tmpl, char *ext, size_t size, struct error *err);
/* The manifest's file name for a shard: "manifest.tsv" or "manifest.3of16.tsv". */
void fetch_manifest_name(int shard_i, int shard_n, char *out, size_t size);
/* A rerun's check of the tile source (a URL template, a COG path or URL) of
 * manifest m, loaded from mpath in out_dir:
 * - the same source, or a new manifest: nothing to say;
 * - none recorded (an earlier cairn-fetch wrote it): its tiles are kept as
 *   tiles of this source;
 * - another source: with replace, the tiles it records ok are removed from
 *   out_dir and every entry is dropped, so every tile is fetched again;
 *   without, nothing is touched and it fails with FETCH_EBADINPUT (the
 *   folder's tiles are finished work: a mistyped --url must not remove them).
 * Unless the source was the same, m is written to mpath with the source
 * before any tile is appended to it. note gets one line for the user, or "". */
int fetch_manifest_source(struct manifest *m, const char *mpath, const char *out_dir,
			  const char *source, int replace, char *note, size_t size,
			  struct error *err);

#endif
