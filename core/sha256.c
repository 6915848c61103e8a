#include "core/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <unistd.h>

/* Fetched once per process: OpenSSL 3 looks the algorithm up through its
 * provider tables on every implicit fetch, which costs more than hashing a
 * small file. */
static EVP_MD *md_sha256;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void fetch_md(void)
{
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int sha256_init(struct sha256 *h, struct error *err)
{
	pthread_once(&md_once, fetch_md);
	if (!md_sha256)
		return error_set(err, "sha256: libcrypto has no SHA256");
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return error_set(err, "sha256: out of memory");
	if (EVP_DigestInit_ex(ctx, md_sha256, NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return error_set(err, "sha256: libcrypto init failed");
	}
	h->ctx = ctx;
	return 0;
}

void sha256_update(struct sha256 *h, const void *data, size_t len)
{
	EVP_DigestUpdate(h->ctx, data, len);
}

void sha256_final(struct sha256 *h, char hex[SHA256_HEX_LEN + 1])
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_DigestFinal_ex(h->ctx, md, &n);
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[SHA256_HEX_LEN] = '\0';
	sha256_release(h);
}

void sha256_release(struct sha256 *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

int sha256_buf(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1], struct error *err)
{
	struct sha256 h;
	if (sha256_init(&h, err) < 0)
		return -1;
	sha256_update(&h, data, len);
	sha256_final(&h, hex);
	return 0;
}

int sha256_file(const char *path, char hex[SHA256_HEX_LEN + 1], uint64_t *bytes, struct error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_errno(err, "%s: cannot open", path);
	struct sha256 h;
	if (sha256_init(&h, err) < 0) {
		close(fd);
		return -1;
	}
	static __thread unsigned char chunk[1 << 16];
	uint64_t total = 0;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			error_errno(err, "%s: read", path);
			sha256_release(&h);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		sha256_update(&h, chunk, (size_t)n);
		total += (uint64_t)n;
	}
	close(fd);
	sha256_final(&h, hex);
	if (bytes)
		*bytes = total;
	return 0;
}
