/* sha256: content hashes for manifests and task keys (libcrypto's EVP). */
#ifndef CORE_SHA256_H
#define CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SHA256_HEX_LEN 64

struct sha256 {
	void *ctx; /* EVP_MD_CTX */
};

int sha256_init(struct sha256 *h, struct error *err);
void sha256_update(struct sha256 *h, const void *data, size_t len);
/* Writes 64 hex digits and a NUL into hex, and releases the context. */
void sha256_final(struct sha256 *h, char hex[SHA256_HEX_LEN + 1]);
void sha256_release(struct sha256 *h);

int sha256_buf(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1], struct error *err);
/* Hash a file; *bytes (if given) gets its size. */
int sha256_file(const char *path, char hex[SHA256_HEX_LEN + 1], uint64_t *bytes, struct error *err);

#endif
