/* error: the one way a library tells its caller what went wrong.
 * Functions return 0 or a negative value and fill a caller's struct error
 * with a message that names the file, line, key or URL involved. */
#ifndef CORE_ERROR_H
#define CORE_ERROR_H

struct error {
	char msg[1024];
};

/* Set the message; returns -1 so that `return error_set(err, ...)` reads well. */
int error_set(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with ": strerror(errno)" appended (errno as it was on entry). */
int error_errno(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Put context in front of the message already there: "reading x: " + old. */
void error_prefix(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void error_clear(struct error *err);

#endif
