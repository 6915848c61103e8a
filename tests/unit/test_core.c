/* Unit tests for core/: buf, error, fs, sha256, jsonio, mem hook. */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/cmd.h"
#include "core/cpus.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/parse.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "core/sha256.h"

static char tmpdir[] = "/tmp/cairn-core.XXXXXX";

static void test_buf_grows_and_formats(void)
{
	struct buf b = BUF_INIT;
	CHECK_STR(buf_str(&b), "");
	for (int i = 0; i < 1000; i++)
		buf_addf(&b, "%d,", i);
	CHECK(!b.failed);
	CHECK(b.len > 3000);
	CHECK(strncmp(b.s, "0,1,2,", 6) == 0);
	CHECK(strstr(b.s, "998,999,") != NULL);
	buf_reset(&b);
	buf_adds(&b, "x");
	CHECK_STR(buf_str(&b), "x");
	buf_release(&b);
}

/* Job ids in a list: whole words only ("12_1" is not in "112_1 12_10"). */
static void test_buf_has_word(void)
{
	struct buf b = BUF_INIT;
	CHECK(!buf_has_word(&b, "12_1"));
	buf_adds(&b, "112_1 12_10 7");
	CHECK(!buf_has_word(&b, "12_1"));
	CHECK(!buf_has_word(&b, ""));
	CHECK(buf_has_word(&b, "112_1"));
	CHECK(buf_has_word(&b, "12_10"));
	CHECK(buf_has_word(&b, "7"));
	buf_adds(&b, " 12_1");
	CHECK(buf_has_word(&b, "12_1"));
	buf_release(&b);
}

static void test_buf_out_of_memory_is_sticky(void)
{
	struct buf b = BUF_INIT;
	mem_fail_after(0);
	buf_adds(&b, "hello");
	mem_fail_after(-1);
	CHECK(b.failed);
	buf_adds(&b, "more"); /* ignored after failure */
	CHECK(b.failed);
	CHECK_INT(b.len, 0);
	buf_release(&b);
}

static void test_error_prefix_and_errno(void)
{
	struct error err;
	CHECK_INT(error_set(&err, "key '%s'", "rank"), -1);
	error_prefix(&err, "spec.ini:%d: ", 14);
	CHECK_STR(err.msg, "spec.ini:14: key 'rank'");
	errno = ENOENT;
	error_errno(&err, "%s: cannot open", "x");
	CHECK_STR(err.msg, "x: cannot open: No such file or directory");
}

static void test_sha256_known_vectors(void)
{
	char hex[65];
	struct error err;
	CHECK_INT(sha256_buf("abc", 3, hex, &err), 0);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CHECK_INT(sha256_buf("", 0, hex, &err), 0);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_atomic_write_and_read(void)
{
	struct error err;
	char path[256], hex[65];
	snprintf(path, sizeof(path), "%s/a/b/c", tmpdir);
	CHECK_INT(fs_mkdir_p(path, &err), 0);
	CHECK(fs_is_dir(path));
	snprintf(path, sizeof(path), "%s/a/b/c/file", tmpdir);
	CHECK_INT(fs_write_atomic(path, "abc", 3, &err), 0);
	char *data;
	size_t len;
	CHECK_INT(fs_read_all(path, &data, &len, &err), 0);
	CHECK_INT(len, 3);
	CHECK_STR(data, "abc");
	mem_free(data);
	uint64_t bytes;
	CHECK_INT(sha256_file(path, hex, &bytes, &err), 0);
	CHECK_INT(bytes, 3);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* No temp file left behind. */
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.0", path, (long)getpid());
	CHECK(!fs_exists(tmp));
	/* Errors name the path. */
	CHECK_INT(fs_read_all("/nonexistent/x", &data, &len, &err), -1);
	CHECK(strstr(err.msg, "/nonexistent/x") != NULL);
	CHECK_INT(fs_read_all("/dev/zero", &data, &len, &err), -1); /* it would never end */
	CHECK(strstr(err.msg, "/dev/zero: a device, not a file") != NULL);
	CHECK_INT(fs_write_atomic("/nonexistent/dir/x", "a", 1, &err), -1);
	CHECK(strstr(err.msg, "/nonexistent/dir/x") != NULL);
	snprintf(path, sizeof(path), "%s/a", tmpdir);
	CHECK_INT(fs_rm_rf(path, &err), 0);
	CHECK(!fs_exists(path));
}

/* A FIFO, a symlink and a folder as output paths: never replaced by a rename. */
static void test_atomic_write_keeps_special_targets(void)
{
	struct error err;
	char fifo[256], link[256], file[256], buf[16];
	struct stat st;
	snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
	CHECK_INT(mkfifo(fifo, 0644), 0);
	/* Our own non-blocking reader, so the writer's open does not wait. */
	int rd = open(fifo, O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	CHECK_INT(fs_write_atomic(fifo, "abc", 3, &err), 0);
	CHECK_INT(fs_write_replace(fifo, "de", 2, &err), 0);
	CHECK_INT(read(rd, buf, sizeof(buf)), 5);
	CHECK(memcmp(buf, "abcde", 5) == 0);
	CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
	/* The writers built on fs_tmp_name + fs_commit_tmp do the same. */
	char tmp[512];
	CHECK_INT(fs_tmp_name(fifo, tmp, sizeof(tmp), &err), 0);
	CHECK(strstr(tmp, "fifo.tmp") == NULL); /* in $TMPDIR, not next to the FIFO */
	CHECK_INT(fs_write_replace(tmp, "xyz", 3, &err), 0);
	CHECK_INT(fs_commit_tmp(tmp, fifo, 1, &err), 0);
	CHECK(!fs_exists(tmp));
	CHECK_INT(read(rd, buf, sizeof(buf)), 3);
	CHECK(memcmp(buf, "xyz", 3) == 0);
	CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
	close(rd);
	/* A symlink to a regular file: the file gets the bytes, the link stays. */
	snprintf(file, sizeof(file), "%s/target", tmpdir);
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	CHECK_INT(fs_write_atomic(file, "old", 3, &err), 0);
	CHECK_INT(symlink(file, link), 0);
	CHECK_INT(fs_write_atomic(link, "new", 3, &err), 0);
	CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
	char *data;
	CHECK_INT(fs_read_all(file, &data, NULL, &err), 0);
	CHECK_STR(data, "new");
	mem_free(data);
	/* A folder is refused, by name. */
	CHECK_INT(fs_write_atomic(tmpdir, "a", 1, &err), -1);
	CHECK(strstr(err.msg, "is a folder") != NULL);
	CHECK(fs_is_dir(tmpdir));
	unlink(link);
	unlink(file);
	unlink(fifo);
}

static void test_json_roundtrip_and_errors(void)
{
	struct error err;
	char path[256];
	snprintf(path, sizeof(path), "%s/x.json", tmpdir);
	json_t *j = json_pack("{s:s, s:i, s:f}", "name", "fetch", "exit", 3, "wall", 1.5);
	CHECK_INT(jsonio_write_atomic(path, j, &err), 0);
	json_decref(j);
	j = jsonio_load(path, &err);
	CHECK(j != NULL);
	CHECK_STR(jsonio_str(j, "name", NULL), "fetch");
	CHECK_INT(jsonio_int(j, "exit", -1), 3);
	CHECK_NEAR(jsonio_num(j, "wall", 0), 1.5, 1e-12);
	CHECK_INT(jsonio_int(j, "missing", 42), 42);
	json_decref(j);
	CHECK_INT(fs_write_atomic(path, "{\"a\": ", 6, &err), 0);
	CHECK(jsonio_load(path, &err) == NULL);
	CHECK(strstr(err.msg, "x.json:1:") != NULL);
}

static void test_clock_formats(void)
{
	char s[32];
	clock_format_duration(3725, s, sizeof(s));
	CHECK_STR(s, "1:02:05");
	clock_format_duration(65, s, sizeof(s));
	CHECK_STR(s, "1:05");
	clock_utc(s, sizeof(s), 1);
	CHECK_INT(strlen(s), 16);
	CHECK(s[8] == 'T' && s[15] == 'Z');
}

static void test_parse_whole_numbers_only(void)
{
	long v = 7;
	CHECK_INT(parse_long("42", 1, 100, &v), 0);
	CHECK_INT(v, 42);
	v = 7;
	CHECK_INT(parse_long("8x", 1, 100, &v), -1);
	CHECK_INT(parse_long("", 1, 100, &v), -1);
	CHECK_INT(parse_long("0", 1, 100, &v), -1);
	CHECK_INT(parse_long("101", 1, 100, &v), -1);
	CHECK_INT(parse_long("99999999999999999999", 1, 100, &v), -1); /* overflow */
	CHECK_INT(v, 7); /* untouched on error */
	float f = 0;
	CHECK_INT(parse_float("0.05", &f), 0);
	CHECK_NEAR(f, 0.05, 1e-7);
	CHECK_INT(parse_float("0", &f), 0);
	CHECK_INT(parse_float("-1", &f), -1);
	CHECK_INT(parse_float("inf", &f), -1);
	CHECK_INT(parse_float("nan", &f), -1);
	CHECK_INT(parse_float("1e39", &f), -1); /* finite as a double, inf as a float */
	CHECK_INT(parse_float("1e400", &f), -1);
	CHECK_INT(parse_float("0.1x", &f), -1);
	CHECK_INT(parse_float("", &f), -1);
	CHECK_INT(parse_float_in("-0.5", -1, 1, &f), 0); /* refine apply's --threshold */
	CHECK(f == -0.5f);
	CHECK_INT(parse_float_in("-1", -1, 1, &f), 0);
	CHECK_INT(parse_float_in("-1.01", -1, 1, &f), -1);
	CHECK_INT(parse_float_in("nan", -1, 1, &f), -1);
}

/* "did you mean": typos find their word, other words find none */
static void test_parse_nearest(void)
{
	const char *keys[] = {"command", "after", "array", "cpus", "time", "temp", "task", NULL};
	CHECK_STR(parse_nearest("comand", keys), "command");  /* a letter left out */
	CHECK_STR(parse_nearest("commnad", keys), "command"); /* two swapped */
	CHECK_STR(parse_nearest("Command", keys), "command"); /* case */
	CHECK_STR(parse_nearest("cpu", keys), "cpus");
	CHECK_STR(parse_nearest("tsk", keys), "task");
	CHECK_STR(parse_nearest("aftre", keys), "after");
	CHECK_STR(parse_nearest("arary", keys), "array");
	CHECK_STR(parse_nearest("tmp", keys), "temp");
	CHECK(parse_nearest("memory", keys) == NULL);
	CHECK(parse_nearest("x", keys) == NULL);
	CHECK(parse_nearest("", keys) == NULL);
	const char *one[] = {"a", "b", "fetch", NULL};
	CHECK(parse_nearest("c", one) == NULL); /* a letter is no typo of another */
	CHECK_STR(parse_nearest("B", one), "b");
	CHECK_STR(parse_nearest("fecth", one), "fetch");
	/* the nearest wins, the first of equals */
	struct parse_near n;
	parse_near_init(&n, "tme");
	parse_near_try(&n, "time");
	parse_near_try(&n, "tme2");
	CHECK_STR(n.best, "time");
	char longw[100];
	memset(longw, 'a', sizeof(longw) - 1);
	longw[99] = '\0';
	const char *longs[] = {longw, NULL};
	CHECK(parse_nearest(longw, longs) == NULL); /* too long to compare */
	/* names in messages: what a terminal would hide shows */
	char v[16];
	CHECK_STR(parse_visible(v, sizeof(v), "after\x01"), "after\\x01");
	CHECK_STR(parse_visible(v, sizeof(v), "a\xc2\xa0" "b"), "a\\xc2\\xa0b");
	CHECK_STR(parse_visible(v, sizeof(v), "aaaaaaaaaaaaaaaaaaaa"), "aaaaaaaaaaaa"); /* cut */
	CHECK_STR(parse_visible(v, 6, "\x01\x02"), "\\x01");
}

static int usage_calls;
static FILE *usage_to;
static void count_usage(FILE *f)
{
	usage_calls++;
	usage_to = f;
}

static int seen_argc;
static const char *seen_arg0, *seen_arg1;
static int run_b(int argc, char **argv)
{
	seen_argc = argc, seen_arg0 = argv[0], seen_arg1 = argc > 1 ? argv[1] : NULL;
	return 7;
}

static void test_cmd_dispatch(void)
{
	static const struct cmd cmds[] = {{"a", NULL}, {"b", run_b}};
	char *argv[] = {"prog", "b", "--x", NULL};
	CHECK_INT(cmd_dispatch("prog", 3, argv, cmds, 2, count_usage), 7);
	CHECK_INT(seen_argc, 2);
	CHECK_STR(seen_arg0, "b");
	CHECK_STR(seen_arg1, "--x");
	CHECK_INT(usage_calls, 0);
	char *help[] = {"prog", "--help", NULL};
	CHECK_INT(cmd_dispatch("prog", 2, help, cmds, 2, count_usage), 0);
	CHECK(usage_calls == 1 && usage_to == stdout);
	CHECK_INT(cmd_dispatch("prog", 1, help, cmds, 2, count_usage), 2);
	CHECK(usage_calls == 2 && usage_to == stderr);
	char *bogus[] = {"prog", "c", NULL};
	fflush(stdout);
	CHECK_INT(cmd_dispatch("prog", 2, bogus, cmds, 2, count_usage), 2);
	CHECK(usage_calls == 3 && usage_to == stderr);
}

/* What the calls between capture_stderr and captured_stderr write on fd 2. */
static int saved_stderr = -1;
static void capture_stderr(void)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
	fflush(stderr);
	saved_stderr = dup(2);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	dup2(fd, 2);
	close(fd);
}

static const char *captured_stderr(void)
{
	static char text[1024];
	char path[300];
	snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
	text[n] = '\0';
	if (f)
		fclose(f);
	return text;
}

/* getopt_long's errors in the program's words, with the option meant */
static void test_cmd_getopt(void)
{
	static const struct option opts[] = {
	    {"zoom", required_argument, 0, 'z'}, {"out", required_argument, 0, 'o'},
	    {"rate", required_argument, 0, 'r'}, {"retries", required_argument, 0, 'R'},
	    {"help", no_argument, 0, 'h'},	 {0, 0, 0, 0}};
	struct {
		char *argv[4];
		int want;
		const char *says;
	} cases[] = {
	    {{"p", "--zoom=5", NULL}, 'z', ""},
	    {{"p", "--zom", "3", NULL}, '?', "p: unknown option '--zom', did you mean '--zoom'?\n"},
	    {{"p", "--zom=3", NULL}, '?', "p: unknown option '--zom', did you mean '--zoom'?\n"},
	    {{"p", "--out", NULL}, '?', "p: option '--out' needs a value\n"},
	    {{"p", "--r", "1", NULL},
	     '?',
	     "p: option '--r' is ambiguous: write it out: --rate --retries\n"},
	    {{"p", "--bogus", NULL}, '?', "p: unknown option '--bogus'\n"},
	    {{"p", "-x", NULL}, '?', "p: unknown option '-x'\n"},
	    {{"p", "--help=1", NULL}, '?', "p: option '--help' takes no value: write '--help' alone\n"},
	    {{"p", "--he=1", NULL}, '?', "p: option '--help' takes no value: write '--help' alone\n"},
	    {{"p", "--r=1", NULL},
	     '?',
	     "p: option '--r' is ambiguous: write it out: --rate --retries\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int argc = 0;
		while (cases[i].argv[argc])
			argc++;
		optind = 0; /* glibc: start over */
		capture_stderr();
		int c = cmd_getopt("p", argc, cases[i].argv, "h", opts);
		const char *said = captured_stderr();
		CHECK_INT(c, cases[i].want);
		CHECK_STR(said, cases[i].says);
	}
	optind = 0;
	char *argv[] = {"p", "--zoom=5", NULL};
	CHECK_INT(cmd_getopt("p", 2, argv, "h", opts), 'z');
	CHECK_STR(optarg, "5");
	static const struct cmd cmds[] = {{"sample", NULL}, {"propose", NULL}};
	char *typo[] = {"prog", "sampel", NULL};
	capture_stderr();
	CHECK_INT(cmd_dispatch("prog", 2, typo, cmds, 2, count_usage), 2);
	CHECK_STR(captured_stderr(), "prog: unknown command 'sampel', did you mean 'sample'?\n");
}

/* Usable CPUs follow the affinity mask: a process bound to one CPU (as
 * Slurm or mpirun --bind-to core bind a task) counts one. */
static void test_cpus_usable(void)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	int n = cpus_usable();
	CHECK(n >= 1 && (online < 1 || n <= online));
	cpu_set_t set;
	CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
	int first = 0;
	while (first < CPU_SETSIZE && !CPU_ISSET(first, &set))
		first++;
	pid_t pid = fork();
	if (pid == 0) {
		CPU_ZERO(&set);
		CPU_SET(first, &set);
		_exit(sched_setaffinity(0, sizeof(set), &set) == 0 && cpus_usable() == 1 ? 0 : 1);
	}
	int status = 0;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* a stage's default threads: OMP_NUM_THREADS (the wrapper sets it to
	   the stage's cpus) when it is a number, else the usable CPUs */
	const char *was = getenv("OMP_NUM_THREADS");
	char *keep = was ? strdup(was) : NULL;
	setenv("OMP_NUM_THREADS", "3", 1);
	CHECK_INT(cpus_default_threads(), 3);
	const char *bad[] = {"0", "x", "2x", "", "5000"};
	for (int i = 0; i < 5; i++) {
		setenv("OMP_NUM_THREADS", bad[i], 1);
		CHECK_INT(cpus_default_threads(), n);
	}
	unsetenv("OMP_NUM_THREADS");
	CHECK_INT(cpus_default_threads(), n);
	if (keep)
		setenv("OMP_NUM_THREADS", keep, 1);
	free(keep);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(test_buf_grows_and_formats);
	RUN(test_cpus_usable);
	RUN(test_buf_has_word);
	RUN(test_buf_out_of_memory_is_sticky);
	RUN(test_error_prefix_and_errno);
	RUN(test_sha256_known_vectors);
	RUN(test_atomic_write_and_read);
	RUN(test_atomic_write_keeps_special_targets);
	RUN(test_json_roundtrip_and_errors);
	RUN(test_clock_formats);
	RUN(test_parse_whole_numbers_only);
	RUN(test_parse_nearest);
	RUN(test_cmd_dispatch);
	RUN(test_cmd_getopt);
	struct error err;
	fs_rm_rf(tmpdir, &err);
	return CHECK_DONE();
}
