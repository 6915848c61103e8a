/* Unit tests for pipeline/: spec parsing and expansion, manifests, task keys,
 * resume planning, and out-of-memory paths through the allocation hook. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "jobs/proc.h"
#include "pipeline/plan.h"
#include "pipeline/release.h"
#include "pipeline/run.h"
#include "pipeline/sched.h"
#include "pipeline/spec.h"
#include "pipeline/task.h"

static char tmp[] = "/tmp/cairn-pipe.XXXXXX";

static const char *write_spec(const char *name, const char *text)
{
	static char path[512];
	struct error err;
	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	fs_write_atomic(path, text, strlen(text), &err);
	return path;
}

static const char *DAG = "[pipeline]\n"
			 "name = demo\n"
			 "[params]\n"
			 "n = 3\n"
			 "word = hi\n"
			 "[defaults]\n"
			 "mem = 2G\n"
			 "time = 01:30:00\n"
			 "[stage a]\n"
			 "command = echo ${param.word} ${task}/${ntasks} > ${out}/a\n"
			 "array = ${param.n}\n"
			 "cpus = 2\n"
			 "[stage b]\n"
			 "after = a\n"
			 "command = cat ${in.a[task]}/a > ${out}/b\n"
			 "    echo $${HOME} done\n"
			 "array = 3\n"
			 "[stage c]\n"
			 "after = b, a\n"
			 "command = ls ${in.b} ${in.a[task]} ${run}\n"
			 "array = 3\n"
			 "retry_on = timeout, exit:75\n";

static void test_spec_parses_stages_params_and_edges(void)
{
	struct spec s;
	struct error err;
	const char *sets[] = {"word=yo"};
	int rc = spec_load(&s, write_spec("dag.ini", DAG), (char *const *)sets, 1, &err);
	CHECK_INT(rc, 0);
	if (rc < 0) {
		printf("#   %s\n", err.msg);
		spec_release(&s);
		return;
	}
	CHECK_STR(s.name, "demo");
	CHECK_STR(s.executor, "local");
	CHECK_INT(s.nstages, 3);
	CHECK_INT(s.ntasks, 9);
	CHECK_INT(s.stages[0].ntasks, 3);
	CHECK_INT(s.stages[0].res.cpus, 2);
	CHECK_INT(s.stages[1].res.cpus, 1);
	CHECK_INT(s.stages[1].res.mem_mb, 2048);
	CHECK_INT(s.stages[1].res.time_s, 5400);
	CHECK_STR(s.stages[2].res.retry_on, "timeout, exit:75");
	/* edges: b <- a one-to-one; c <- b all, c <- a one-to-one */
	CHECK_INT(s.stages[1].nin, 1);
	CHECK_INT(s.stages[1].in[0].one_to_one, 1);
	CHECK_INT(s.stages[2].nin, 2);
	CHECK_INT(s.stages[2].in[0].from, 1);
	CHECK_INT(s.stages[2].in[0].one_to_one, 0);
	CHECK_INT(s.stages[2].in[1].one_to_one, 1);
	CHECK_INT(s.order[0], 0);
	CHECK_INT(s.order[2], 2);

	struct buf b = BUF_INIT;
	struct spec_ctx ctx = {"/r", 2};
	CHECK_INT(spec_expand_command(&s, 0, &ctx, &b, &err), 0);
	CHECK_STR(buf_str(&b), "echo yo 2/3 > /r/stages/a/2/out/a");
	buf_reset(&b);
	CHECK_INT(spec_expand_command(&s, 1, &ctx, &b, &err), 0);
	CHECK_STR(buf_str(&b), "cat /r/stages/a/2/out/a > /r/stages/b/2/out/b\necho ${HOME} done");
	buf_reset(&b);
	CHECK_INT(spec_expand_command(&s, 2, &ctx, &b, &err), 0);
	CHECK_STR(buf_str(&b), "ls /r/stages/b/0/out /r/stages/b/1/out /r/stages/b/2/out "
			       "/r/stages/a/2/out /r");
	buf_release(&b);

	/* The frozen copy loads to the same pipeline, with the --set value kept. */
	char frozen[512];
	snprintf(frozen, sizeof(frozen), "%s/frozen.ini", tmp);
	CHECK_INT(spec_write_frozen(&s, frozen, &err), 0);
	struct spec f;
	CHECK_INT(spec_load(&f, frozen, NULL, 0, &err), 0);
	CHECK_STR(spec_param(&f, "word"), "yo");
	CHECK_STR(f.stages[1].command, s.stages[1].command);
	CHECK_INT(f.ntasks, 9);
	spec_release(&f);
	spec_release(&s);
}

/* ${in.STAGE/PATH} and ${in.STAGE[task]/PATH}: each folder with PATH
 * under it; the dependency as without the path. */
static void test_spec_in_paths(void)
{
	struct spec s;
	struct error err;
	const char *text =
	    "[stage a]\ncommand = x\narray = 3\n"
	    "[stage b]\nafter = a\ncommand = cat ${in.a[task]/x.txt}\narray = 3\n"
	    "[stage c]\nafter = a, b\narray = 3\n"
	    "command = merge ${in.a/sub/*.ds} ${in.b[task]/y}\n"
	    "[stage d]\nafter = a\ncommand = echo ${in.a[task]/x} ${in.a/x} ${in.a}\n"
	    "array = 3\n"
	    /* $${ is text wherever it is read: not a read of all of a */
	    "[stage e]\nafter = a\narray = 3\n"
	    "command = echo $${in.a} $$${in.a} ${in.a[task]} $5{ $\n";
	int rc = spec_load(&s, write_spec("paths.ini", text), NULL, 0, &err);
	CHECK_INT(rc, 0);
	if (rc < 0) {
		printf("#   %s\n", err.msg);
		spec_release(&s);
		return;
	}
	CHECK_INT(s.stages[1].in[0].one_to_one, 1); /* b <- a, task by task */
	CHECK_INT(s.stages[2].in[0].one_to_one, 0); /* c <- all of a */
	CHECK_INT(s.stages[2].in[1].one_to_one, 1); /* c <- b, task by task */
	CHECK_INT(s.stages[3].in[0].one_to_one, 0); /* d reads all of a too */
	struct buf b = BUF_INIT;
	struct spec_ctx ctx = {"/r", 2};
	CHECK_INT(spec_expand_command(&s, 1, &ctx, &b, &err), 0);
	CHECK_STR(buf_str(&b), "cat /r/stages/a/2/out/x.txt");
	buf_reset(&b);
	CHECK_INT(spec_expand_command(&s, 2, &ctx, &b, &err), 0);
	CHECK_STR(buf_str(&b), "merge /r/stages/a/0/out/sub/*.ds /r/stages/a/1/out/sub/*.ds "
			       "/r/stages/a/2/out/sub/*.ds /r/stages/b/2/out/y");
	buf_reset(&b);
	CHECK_INT(spec_expand_command(&s, 3, &ctx, &b, &err), 0);
	CHECK_STR(buf_str(&b), "echo /r/stages/a/2/out/x /r/stages/a/0/out/x /r/stages/a/1/out/x "
			       "/r/stages/a/2/out/x /r/stages/a/0/out /r/stages/a/1/out "
			       "/r/stages/a/2/out");
	CHECK_INT(s.stages[4].in[0].one_to_one, 1);
	buf_reset(&b);
	CHECK_INT(spec_expand_command(&s, 4, &ctx, &b, &err), 0);
	CHECK_STR(buf_str(&b), "echo ${in.a} $${in.a} /r/stages/a/2/out $5{ $");
	buf_release(&b);
	spec_release(&s);
}

/* Specs broken at random (bytes flipped, cut, or the characters that mean
 * something to the parser put in): each loads, or fails with a message
 * that names the file; never a crash (ASan in make test ASAN=1), and what
 * loads expands every stage's command. Deterministic (a fixed seed). */
static void test_spec_survives_random_damage(void)
{
	static const char special[] = "${}[]=;,/\n \t.#-";
	static const char *more = "; the rest of the language\n"
				  "[pipeline]\nname = m\nexecutor = slurm\n"
				  "[slurm]\npartition = p\nsbatch_args = --exclusive\n"
				  "[stage a]\narray = 4\nthrottle = 2\nretries = 2\n"
				  "retry_on = oom, exit:75\ntime = 1-00:00:00\ngpus = 1\n"
				  "command = x ${in.b/y.ds} ; a comment\n"
				  "    y ${task} $${HOME}\nafter = b\nranks = 2\n"
				  "[stage b]\narray = 4\ntemp = yes\ncommand = z ${run} > ${out}/y.ds\n";
	const char *bases[] = {DAG, more};
	char *text = malloc(2 * strlen(DAG) + 2 * strlen(more) + 64);
	for (int i = 0; i < 2; i++) { /* whole, both load */
		struct spec s;
		struct error err;
		int rc = spec_load(&s, write_spec("fuzz.ini", bases[i]), NULL, 0, &err);
		CHECK_INT(rc, 0);
		if (rc < 0)
			printf("#   %s\n", err.msg);
		spec_release(&s);
	}
	uint64_t x = 88172645463325252ull;
	int loaded = 0, failed = 0, unnamed = 0;
	for (int it = 0; it < 6000; it++) {
		const char *base = bases[it % 2];
		size_t len = strlen(base);
		memcpy(text, base, len + 1);
		size_t n = len;
		int edits = 1 + (int)(it % 4);
		for (int e = 0; e < edits; e++) {
			check_rand(&x);
			size_t at = (size_t)(x >> 8) % n;
			switch (x % 4) {
			case 0: /* flip a byte */
				text[at] = (char)(x >> 32);
				if (!text[at])
					text[at] = '\x01';
				break;
			case 1: { /* cut a run of 1 to 8 */
				size_t k = 1 + (x >> 40) % 8;
				if (k > n - at)
					k = n - at;
				memmove(text + at, text + at + k, n - at - k + 1);
				n -= k;
				break;
			}
			default: /* a character the parser cares about */
				memmove(text + at + 1, text + at, n - at + 1);
				text[at] = special[(x >> 24) % (sizeof(special) - 1)];
				n++;
			}
			if (n == 0)
				break;
		}
		struct spec s;
		struct error err;
		err.msg[0] = '\0';
		if (spec_load(&s, write_spec("fuzz.ini", text), NULL, 0, &err) == 0) {
			loaded++;
			struct buf b = BUF_INIT;
			struct spec_ctx ctx = {"/r", 0};
			for (int i = 0; i < s.nstages; i++) {
				buf_reset(&b);
				if (spec_expand_command(&s, i, &ctx, &b, &err) < 0)
					unnamed++; /* checked at load: must expand */
			}
			buf_release(&b);
		} else {
			failed++;
			if (!strstr(err.msg, "fuzz.ini"))
				unnamed++, printf("#   no file named: %s\n", err.msg);
		}
		spec_release(&s);
	}
	free(text);
	printf("# random damage: %d specs loaded, %d refused\n", loaded, failed);
	CHECK(loaded > 0 && failed > 0);
	CHECK_INT(unnamed, 0);
}

static void test_spec_values(void)
{
	CHECK_INT(spec_parse_mem_mb("512M"), 512);
	CHECK_INT(spec_parse_mem_mb("4G"), 4096);
	CHECK_INT(spec_parse_mem_mb("4GB"), 4096);
	CHECK_INT(spec_parse_mem_mb("1T"), 1048576);
	CHECK_INT(spec_parse_mem_mb("100"), 100);
	CHECK(spec_parse_mem_mb("4X") < 0);
	CHECK(spec_parse_mem_mb("") < 0);
	CHECK(spec_parse_mem_mb("-1G") < 0);
	CHECK_INT(spec_parse_time_s("30"), 1800);
	CHECK_INT(spec_parse_time_s("10:30"), 630);
	CHECK_INT(spec_parse_time_s("01:30:00"), 5400);
	CHECK_INT(spec_parse_time_s("2-00:00:00"), 2 * 86400);
	CHECK_INT(spec_parse_time_s("1-12"), 86400 + 12 * 3600);
	CHECK(spec_parse_time_s("1:2:3:4") < 0);
	CHECK(spec_parse_time_s("abc") < 0);
	CHECK_INT(spec_parse_time_s("90"), 5400);       /* the first field is not on a clock */
	CHECK_INT(spec_parse_time_s("30:00:59"), 108059);
	CHECK(spec_parse_time_s("99:99") < 0);          /* 99 seconds */
	CHECK(spec_parse_time_s("01:60:00") < 0);
	CHECK(spec_parse_time_s("1-25") < 0);           /* 25 hours of a day */
	CHECK_INT(spec_parse_time_s("1-23:59:59"), 86400 + 86399);
	CHECK(spec_parse_time_s("") < 0);
	/* the most a spec takes, and no overflow on the way (the fuzzer's finds) */
	CHECK_INT(spec_parse_time_s("365-00"), SPEC_TIME_MAX_S);
	CHECK_INT(spec_parse_time_s("365-00:00:01"), -2);
	CHECK_INT(spec_parse_time_s("99999999999999999999:05:00"), -2);
	CHECK_INT(spec_parse_time_s("5124095576030432:00:00"), -2);
	CHECK_INT(spec_parse_time_s("106751991167300-00"), -2);
	CHECK_INT(spec_parse_time_s("525600"), SPEC_TIME_MAX_S); /* minutes */
	CHECK_INT(spec_parse_time_s("525601"), -2);
	CHECK_INT(spec_parse_time_s("99999999999999999999:99"), -1); /* bad form first */
	CHECK_INT(spec_parse_mem_mb("1P"), -1);
	CHECK_INT(spec_parse_mem_mb("1024T"), SPEC_MEM_MAX_MB);
	CHECK_INT(spec_parse_mem_mb("1025T"), -2);
	CHECK_INT(spec_parse_mem_mb("4611686018427387903"), -2);
	CHECK_INT(spec_parse_mem_mb("inf"), -2);
	CHECK_INT(spec_parse_mem_mb("nan"), -1);
}

static void test_spec_errors_name_file_and_line(void)
{
	struct {
		const char *text, *want;
	} cases[] = {
	    {"[stage a]\ncommand = x\ncpus = 0\n", "bad.ini:3: cpus = '0'"},
	    {"[stage a]\ncommand = x\n[stage b]\nafter = a a\ncommand = y\n", "listed twice"},
	    {"[pipeline]\nname = x y\n[stage a]\ncommand = x\n", "bad.ini:1: [pipeline]: name"},
	    {"[pipeline]\nexecutor = pbs\n[stage a]\ncommand = x\n", "executor 'pbs'"},
	    {"[stage a]\narray = 2\n", "bad.ini:1: stage 'a' has no command"},
	    {"[stage a]\narray = 2\ncommand =\n", "bad.ini:3: stage 'a': command is empty"},
	    {"[params]\nx = 1\n", "no [stage NAME] sections"},
	    {"[stage a]\ncommand = x\nretry_on = timeout, bogus\n", "unknown failure kind 'bogus'"},
	    {"[stage a]\ncommand = x\narray = ${param.n}\n",
	     "bad.ini:3: unknown variable ${param.n}"},
	    {"[stage a]\ncommand = ${in.zz}\n", "bad.ini:2: stage 'a': ${in.zz}: no stage 'zz'"},
	    {"[stage a]\nafter = a\ncommand = x\n", "cannot run after itself"},
	    {"[stage a]\ncommand = x\ncommand = y\n", "key 'command' given twice"},
	    {"[params]\nd = ${out}/f\n[stage a]\ncommand = x\n",
	     "bad.ini:2: [params] d: only ${param.NAME} may be used in a param, not '${out}'"},
	    {"[params]\na = ${param.b}\nb = x${param.a}\n[stage a]\ncommand = x\n",
	     "[params] a refers back to itself"},
	    {"[params]\na = ${param.zz}\n[stage a]\ncommand = x\n",
	     "bad.ini:2: unknown variable ${param.zz}"},
	    /* params that use each other over and over (the fuzzer's: 14.6 GB) */
	    {"[params]\na = ${param.b}${param.b}${param.b}${param.b}${param.b}${param.b}${param.b}${param.b}\nb = ${param.c}${param.c}${param.c}${param.c}${param.c}${param.c}${param.c}${param.c}\nc = ${param.d}${param.d}${param.d}${param.d}${param.d}${param.d}${param.d}${param.d}\nd = ${param.e}${param.e}${param.e}${param.e}${param.e}${param.e}${param.e}${param.e}\ne = ${param.f}${param.f}${param.f}${param.f}${param.f}${param.f}${param.f}${param.f}\n"
	     "f = xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n[stage a]\ncommand = x\n",
	     "bad.ini:2: this value grows past 1 MiB as its ${param.b} expand"},
	    {"[stage a]\ncommand = x\nafter\x01 = y\n", "unknown key 'after\\x01', did you mean 'after'?"},
	    {"[stage a]\ncommand = x\nmem = 0\n", "bad.ini:3: mem = '0': want more than 0 (leave mem out for no limit)"},
	    {"[stage a]\ncommand = x\ntime = 0:00\n", "bad.ini:3: time = '0:00': want more than 0"},
	    {"[stage a]\ncommand = x\ntime = 400-00\n",
	     "bad.ini:3: time = '400-00': more than 365 days (365-00), the most a spec takes"},
	    /* a typo gets its word */
	    {"[stage a]\ncomand = x\n", "bad.ini:2: stage 'a': unknown key 'comand', did you mean "
					"'command'? (known: command, after, array, temp, cpus, "},
	    {"[stage a]\ncommand = x\nmemory = 4G\n", "'memory', did you mean 'mem'?"},
	    {"[stage a]\ncommand = x\nmem = 8G..1G\n",
	     "bad.ini:3: mem = '8G..1G': the range ends below its start"},
	    {"[stage a]\ncommand = x\nmem = 1G..\n",
	     "bad.ini:3: mem = '1G..': want a size like 512M or 4G, or a range like 1G..8G"},
	    {"[stage a]\ncommand = x\ntime = 2:00:00..1:00:00\n",
	     "bad.ini:3: time = '2:00:00..1:00:00': the range ends below its start; write the first time first"},
	    {"[stage a]\ncommand = x\ntime = 1h..2h\n",
	     "bad.ini:3: time = '1h..2h': want minutes or [D-]HH:MM:SS, like 30 or 01:30:00, or a range like 1:00:00..8:00:00"},
	    {"[stage a]\ncommand = x\nzzzz = 1\n", "unknown key 'zzzz' (known: command"},
	    {"[slurm]\npartion = x\n[stage a]\ncommand = x\n",
	     "[slurm]: unknown key 'partion', did you mean 'partition'? (known: partition, "
	     "account, qos, sbatch_args)"},
	    {"[pipeline]\nnmae = x\n[stage a]\ncommand = x\n", "'nmae', did you mean 'name'?"},
	    {"[stages a]\ncommand = x\n", "bad.ini:1: unknown section [stages a], did you mean "
					  "'[stage a]'?"},
	    {"[param]\nx = 1\n[stage a]\ncommand = x\n", "[param], did you mean '[params]'?"},
	    {"[stage fetch]\ncommand = x\n[stage b]\nafter = fecth\ncommand = y\n",
	     "no stage named 'fecth', did you mean 'fetch'?"},
	    {"[stage fetch]\ncommand = x\n[stage b]\nafter = fetch\ncommand = cat ${in.fech}\n",
	     "${in.fech}: no stage 'fech', did you mean 'fetch'?"},
	    {"[params]\nroot = /x\n[stage a]\ncommand = ls ${param.rot}\n",
	     "no 'rot' in [params], did you mean 'root'?"},
	    {"[stage a]\ncommand = echo ${tsk}\n", "'${tsk}', did you mean '${task}'?"},
	    {"[stage a]\ncommand = echo ${params.x}/y\n", "did you mean '${param.x}'?"},
	    {"[stage a]\ncommand = echo ${input.a[task]}\n", "did you mean '${in.a[task]}'?"},
	    {"[stage a]\ncommand = echo ${HOME}\n",
	     "'${HOME}', for the shell's variable write '$HOME' or '$${HOME}'"},
	    {"[stage a]\ncommand = echo ${task.x}\n", "unknown variable '${task.x}' (known:"},
	    {"a = 1\nb = 2\n[stage a]\ncommand = x\n",
	     "bad.ini:1: 'a' comes before any section: put it under [pipeline]"},
	    {"[stage a]\ncommand = x\n  [stage b]\n  command = y\n",
	     "bad.ini:3: '[stage b]' is indented, so it continues 'command'"},
	    /* a path under an input: no way out of it, nothing the shell splits */
	    {"[stage a]\ncommand = x\n[stage b]\nafter = a\ncommand = cat ${in.a/../x}\n",
	     "bad.ini:5: stage 'b': ${in.a/../x}: a path under an input may have"},
	    {"[stage a]\ncommand = x\n[stage b]\nafter = a\ncommand = cat ${in.a/}\n",
	     "${in.a/}: a path under an input"},
	    {"[stage a]\ncommand = x\n[stage b]\nafter = a\ncommand = cat ${in.a//x}\n",
	     "${in.a//x}: a path under an input"},
	    {"[stage a]\ncommand = x\n[stage b]\nafter = a\ncommand = cat ${in.a/x y}\n",
	     "stage 'b': ${in.a/x y}: a path under an input may have letters"},
	    {"[stage a]\ncommand = x\n[stage b]\nafter = a\ncommand = cat ${in.a[tusk]/x}\n",
	     "unknown variable '${in.a[tusk]/x}'"},
	    {"[stage a]\ncommand = x\n[stage b]\ncommand = cat ${in.a/x}\n",
	     "stage 'b' reads ${in.a} but does not run after it: add 'after = a'"},
	    {"[stage a]\ncommand = x\ntemp = maybe\n",
	     "bad.ini:3: stage 'a': temp = maybe: want yes or no"},
	    {"[stage a]\ncommand = x\n[stage b]\nafter = a\ntemp = yes\ncommand = y\n",
	     "bad.ini:5: stage 'b': temp = yes, but no stage runs after it"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spec s;
		struct error err;
		error_clear(&err);
		int rc = spec_load(&s, write_spec("bad.ini", cases[i].text), NULL, 0, &err);
		CHECK_INT(rc, -1);
		if (!strstr(err.msg, cases[i].want))
			printf("#   case %zu: '%s' lacks '%s'\n", i, err.msg, cases[i].want);
		CHECK(strstr(err.msg, cases[i].want) != NULL);
		spec_release(&s);
	}
}

/* A param may use others (resolved once, $${ kept literal); the frozen copy
 * keeps them as written, so a later --set reaches every param built on it. */
static void test_spec_params_use_params(void)
{
	const char *text = "[params]\n"
			   "path = ${param.root}/x\n"
			   "root = /data/$${USER}-${param.tag}\n"
			   "tag = v1\n"
			   "[stage a]\n"
			   "command = ls ${param.path}\n"
			   "    [ -d ${out} ] && echo ok\n";
	struct spec s, f;
	struct error err;
	int rc = spec_load(&s, write_spec("params.ini", text), NULL, 0, &err);
	CHECK_INT(rc, 0);
	if (rc < 0) {
		printf("#   %s\n", err.msg);
		spec_release(&s);
		return;
	}
	CHECK_STR(spec_param(&s, "path"), "/data/${USER}-v1/x");
	/* an indented line that starts with '[' continues the command */
	struct buf b = BUF_INIT;
	struct spec_ctx ctx = {"/r", 0};
	CHECK_INT(spec_expand_command(&s, 0, &ctx, &b, &err), 0);
	CHECK_STR(buf_str(&b), "ls /data/${USER}-v1/x\n[ -d /r/stages/a/0/out ] && echo ok");
	buf_release(&b);
	char frozen[512];
	snprintf(frozen, sizeof(frozen), "%s/params-frozen.ini", tmp);
	CHECK_INT(spec_write_frozen(&s, frozen, &err), 0);
	spec_release(&s);
	const char *sets[] = {"tag=v2"};
	CHECK_INT(spec_load(&f, frozen, (char *const *)sets, 1, &err), 0);
	CHECK_STR(spec_param(&f, "path"), "/data/${USER}-v2/x");
	spec_release(&f);
}

/* A --set value the run's spec.ini could not hold is refused before anything
 * is written; the longest value that fits round-trips. */
static void test_spec_set_values_kept_exactly(void)
{
	const char *text = "[params]\nv = 1\n[stage a]\ncommand = echo ${param.v}\n";
	const char *path = write_spec("set.ini", text);
	char longest[SPEC_LINE_MAX + 2], too_long[SPEC_LINE_MAX + 2];
	memset(longest, 'y', sizeof(longest));
	longest[SPEC_LINE_MAX - 2] = '\0'; /* "v=" + value */
	memset(too_long, 'y', sizeof(too_long));
	too_long[SPEC_LINE_MAX - 1] = '\0';
	struct {
		const char *value, *want; /* want NULL: kept */
	} cases[] = {
		{"x ; y", "' ;' starts a comment"},
		{"x;y", NULL},
		{";x", NULL}, /* "v = ;x" would read as an empty value */
		{" x", "white space at the start or end"},
		{"x\t", "white space at the start or end"},
		{"a\n\nb", "an empty line"},
		{"a\n", "an empty line"},
		{"a\n# b", "starts with ';' or '#'"},
		{"a\nb c", NULL},
		{"", NULL},
		{longest, NULL},
		{too_long, "a line of 198 characters"},
	};
	char frozen[512];
	snprintf(frozen, sizeof(frozen), "%s/set-frozen.ini", tmp);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spec s, f;
		struct error err;
		error_clear(&err);
		char set[SPEC_LINE_MAX + 8];
		snprintf(set, sizeof(set), "v=%s", cases[i].value);
		char *sets[] = {set};
		int rc = spec_load(&s, path, sets, 1, &err);
		if (cases[i].want) {
			CHECK_INT(rc, -1);
			if (!strstr(err.msg, cases[i].want))
				printf("#   case %zu: '%s' lacks '%s'\n", i, err.msg, cases[i].want);
			CHECK(strstr(err.msg, cases[i].want) != NULL);
		} else {
			CHECK_INT(rc, 0);
			CHECK_INT(rc == 0 ? spec_write_frozen(&s, frozen, &err) : -1, 0);
			CHECK_INT(spec_load(&f, frozen, NULL, 0, &err), 0);
			CHECK_STR(spec_param(&f, "v"), cases[i].value);
			spec_release(&f);
		}
		spec_release(&s);
	}
}

/* A run's own spec.ini opens as it was written, even where a new spec would
 * be refused: params of runs made before params were checked hold ${HOME}. */
static void test_frozen_spec_opens_old_params(void)
{
	const char *text = "[pipeline]\nname = old\n[params]\ndata = ${HOME}/x\nv = ${param.data}/y\n"
			   "[stage s]\ncommand = echo ${param.v}\n";
	const char *path = write_spec("old.ini", text);
	struct spec s;
	struct error err;
	CHECK_INT(spec_load(&s, path, NULL, 0, &err), -1);
	spec_release(&s);
	CHECK_INT(spec_load_frozen(&s, path, NULL, 0, &err), 0);
	CHECK_STR(spec_param(&s, "v"), "${HOME}/x/y");
	spec_release(&s);
	/* a CRLF line of exactly 199 characters is one line, not too long */
	char crlf[512];
	int n = snprintf(crlf, sizeof(crlf), "[stage a]\r\ncommand = echo ");
	while (n < 11 + 199)
		crlf[n++] = 'y';
	snprintf(crlf + n, sizeof(crlf) - (size_t)n, "\r\n");
	CHECK_INT(spec_load(&s, write_spec("crlf.ini", crlf), NULL, 0, &err), 0);
	spec_release(&s);
}

static void test_run_path_checked(void)
{
	struct error err;
	CHECK_INT(run_check_path("/tmp/runs/demo-20261203T101010Z-ab12_x.y+z,w:v@u=t~r", &err), 0);
	CHECK_INT(run_check_path("/tmp/a%jb", &err), -1); /* an sbatch --output pattern */
	CHECK_INT(run_check_path("/tmp/dir with space/run", &err), -1);
	CHECK(strstr(err.msg, "holds a space") != NULL);
	CHECK_INT(run_check_path("/tmp/a$b", &err), -1);
	CHECK(strstr(err.msg, "holds '$'") != NULL);
	CHECK_INT(run_check_path("/tmp/a\nb", &err), -1);
	CHECK(strstr(err.msg, "byte 0x0a") != NULL);
}

static void test_spec_cycle_names_its_stages(void)
{
	struct spec s;
	struct error err;
	const char *text = "[stage a]\ncommand = x\n[stage b]\nafter = a, d\ncommand = x\n"
			   "[stage c]\nafter = b\ncommand = x\n[stage d]\nafter = c\ncommand = x\n";
	CHECK_INT(spec_load(&s, write_spec("cycle.ini", text), NULL, 0, &err), -1);
	CHECK(strstr(err.msg, "cycle in the stages") != NULL);
	CHECK(strstr(err.msg, "b") && strstr(err.msg, "c ->") && strstr(err.msg, "d"));
	CHECK(strstr(err.msg, "a ->") == NULL); /* a is not on the cycle */
	spec_release(&s);
}

/* Every allocation in spec_load may fail: each must give an error, never a crash. */
static void test_spec_out_of_memory_never_crashes(void)
{
	const char *path = write_spec("oom.ini", DAG);
	int failures = 0;
	for (long n = 0; n < 400; n++) {
		struct spec s;
		struct error err;
		error_clear(&err);
		mem_fail_after(n);
		int rc = spec_load(&s, path, NULL, 0, &err);
		mem_fail_after(-1);
		spec_release(&s);
		if (rc == 0)
			break;
		failures++;
		CHECK(err.msg[0] != '\0');
	}
	CHECK(failures > 20);
}

static void test_manifest_detects_changes(void)
{
	char dir[512], f[600];
	struct error err;
	snprintf(dir, sizeof(dir), "%s/m/sub", tmp);
	fs_mkdir_p(dir, &err);
	snprintf(f, sizeof(f), "%s/x", dir);
	fs_write_atomic(f, "abc", 3, &err);
	snprintf(dir, sizeof(dir), "%s/m", tmp);
	snprintf(f, sizeof(f), "%s/m/y", tmp);
	fs_write_atomic(f, "hello", 5, &err);
	json_t *m;
	char d1[65], d2[65];
	CHECK_INT(task_manifest_build(dir, &m, d1, &err), 0);
	CHECK_INT(json_array_size(m), 2);
	CHECK_STR(jsonio_str(json_array_get(m, 0), "path", ""), "sub/x");
	CHECK_STR(jsonio_str(json_array_get(m, 0), "sha256", ""),
		  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	struct buf why = BUF_INIT;
	CHECK_INT(task_manifest_check(dir, m, 0, &why, &err), 0);
	CHECK_INT(task_manifest_check(dir, m, 1, &why, &err), 0);
	/* same size, other bytes: caught by time quickly and by hash fully */
	usleep(10000);
	fs_write_atomic(f, "HELLO", 5, &err);
	CHECK_INT(task_manifest_check(dir, m, 0, &why, &err), 1);
	CHECK(strstr(buf_str(&why), "out/y was modified") != NULL);
	buf_reset(&why);
	CHECK_INT(task_manifest_check(dir, m, 1, &why, &err), 1);
	CHECK(strstr(buf_str(&why), "sha256 differs") != NULL);
	/* the digest follows content, not times */
	json_t *m2;
	CHECK_INT(task_manifest_build(dir, &m2, d2, &err), 0);
	CHECK(strcmp(d1, d2) != 0);
	fs_write_atomic(f, "hello", 5, &err);
	json_decref(m2);
	CHECK_INT(task_manifest_build(dir, &m2, d2, &err), 0);
	CHECK_STR(d2, d1);
	/* an added file */
	snprintf(f, sizeof(f), "%s/m/z", tmp);
	fs_write_atomic(f, "", 0, &err);
	buf_reset(&why);
	CHECK_INT(task_manifest_check(dir, m2, 0, &why, &err), 1);
	CHECK(strstr(buf_str(&why), "out/z was added") != NULL);
	/* a deleted file */
	unlink(f);
	snprintf(f, sizeof(f), "%s/m/sub/x", tmp);
	unlink(f);
	buf_reset(&why);
	CHECK_INT(task_manifest_check(dir, m2, 0, &why, &err), 1);
	CHECK(strstr(buf_str(&why), "out/sub/x was deleted") != NULL);
	/* a damaged done.json without its list: changed (the task reruns), not an error */
	buf_reset(&why);
	json_t *notalist = json_string("x");
	CHECK_INT(task_manifest_check(dir, notalist, 0, &why, &err), 1);
	CHECK(strstr(buf_str(&why), "done.json has no manifest (damaged)") != NULL);
	json_decref(notalist);
	buf_release(&why);
	json_decref(m);
	json_decref(m2);
}

/* Fake a done task the way cairn exec would. */
static void fake_done(const struct run *r, int s, int t, const char *content)
{
	struct error err;
	struct buf p = BUF_INIT;
	const char *name = r->spec.stages[s].name;
	task_path(&p, r->dir, name, t, "out");
	fs_mkdir_p(p.s, &err);
	buf_adds(&p, "/f");
	fs_write_atomic(p.s, content, strlen(content), &err);
	buf_reset(&p);
	task_path(&p, r->dir, name, t, "out");
	json_t *m;
	char digest[65], key[65];
	task_manifest_build(p.s, &m, digest, &err);
	json_t *parts = NULL;
	CHECK_INT(task_key(&r->spec, r->dir, s, t, key, &parts, &err), 0);
	json_t *done = json_pack("{s:s, s:s, s:o, s:o}", "key", key, "manifest_sha256", digest,
				 "manifest", m, "key_parts", parts);
	buf_reset(&p);
	task_path(&p, r->dir, name, t, "done.json");
	jsonio_write_atomic(p.s, done, &err);
	json_decref(done);
	buf_release(&p);
}

/* A task's key leaves out where the run folder is (a run moved or copied
 * keeps its keys), and a key written before that (cairn-key-1, the command
 * with the run's path in it) is still taken as the same. */
static void test_key_leaves_out_the_run_folder(void)
{
	struct spec s;
	struct error err;
	CHECK_INT(spec_load(&s, write_spec("k.ini", "[stage a]\ncommand = ls ${run} > ${out}/x\n"),
			    NULL, 0, &err),
		  0);
	char k1[65], k2[65], legacy[65], cmd_sha[65];
	CHECK_INT(task_key(&s, "/runs/one", 0, 0, k1, NULL, &err), 0);
	CHECK_INT(task_key(&s, "/elsewhere/two", 0, 0, k2, NULL, &err), 0);
	CHECK_STR(k1, k2);
	const char *cmd = "ls /runs/one > /runs/one/stages/a/0/out/x";
	CHECK_INT(sha256_buf(cmd, strlen(cmd), cmd_sha, &err), 0);
	char text[256];
	snprintf(text, sizeof(text), "cairn-key-1\ncommand %s\nresources ranks=1 gpus=0\n", cmd_sha);
	CHECK_INT(sha256_buf(text, strlen(text), legacy, &err), 0);
	CHECK(strcmp(legacy, k1) != 0);
	CHECK(task_key_same(&s, "/runs/one", 0, 0, NULL, NULL, legacy, k1));
	CHECK(!task_key_same(&s, "/runs/moved", 0, 0, NULL, NULL, legacy, k1));
	CHECK(!task_key_same(&s, "/runs/one", 0, 0, NULL, NULL, "0123", k1));
	spec_release(&s);
	/* $${run} is a literal ${run}: not the same command as ${run} */
	CHECK_INT(spec_load(&s, write_spec("k2.ini", "[stage a]\ncommand = ls $${run} > ${out}/x\n"),
			    NULL, 0, &err),
		  0);
	CHECK_INT(task_key(&s, "/runs/one", 0, 0, k2, NULL, &err), 0);
	CHECK(strcmp(k1, k2) != 0);
	spec_release(&s);
}

static void test_plan_reruns_only_what_must(void)
{
	struct spec s;
	struct error err;
	const char *text = "[pipeline]\nname = p\n[params]\nv = 1\n"
			   "[stage a]\ncommand = echo ${param.v} ${task}\narray = 2\n"
			   "[stage b]\nafter = a\ncommand = cat ${in.a[task]}\narray = 2\n"
			   "[stage c]\nafter = b\ncommand = cat ${in.b}\n";
	CHECK_INT(spec_load(&s, write_spec("p.ini", text), NULL, 0, &err), 0);
	struct run r;
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/run", tmp);
	CHECK_INT(run_create(&r, &s, dir, "local", &err), 0);
	spec_release(&s);
	fake_done(&r, 0, 0, "a0");
	fake_done(&r, 0, 1, "a1");
	fake_done(&r, 1, 0, "b0");
	fake_done(&r, 1, 1, "b1");
	struct plan p;
	CHECK_INT(plan_make(&p, &r, 0, 0, &err), 0);
	CHECK_INT(p.skip, 4);
	CHECK_INT(p.run, 1);
	CHECK_INT(p.stages[2].reason[0], WHY_NEW);
	plan_release(&p);
	fake_done(&r, 2, 0, "c");
	CHECK_INT(plan_make(&p, &r, 0, 0, &err), 0);
	CHECK_INT(p.run, 0);
	plan_release(&p);

	/* a1 redone with other output: b1's key changes (its input changed), c reruns
	 * because b1 reruns; a0, b0 stay. */
	usleep(10000);
	fake_done(&r, 0, 1, "a1-new");
	CHECK_INT(plan_make(&p, &r, 0, 0, &err), 0);
	CHECK_INT(p.stages[0].action[0], PLAN_SKIP);
	CHECK_INT(p.stages[0].action[1], PLAN_SKIP);
	CHECK_INT(p.stages[1].action[0], PLAN_SKIP);
	CHECK_INT(p.stages[1].action[1], PLAN_RUN);
	CHECK_INT(p.stages[1].reason[1], WHY_KEY);
	CHECK_INT(p.stages[2].reason[0], WHY_UPSTREAM);
	struct buf why = BUF_INIT;
	plan_explain(&p, &r, 1, 1, &why);
	CHECK(strstr(buf_str(&why), "input a/1 changed") != NULL);
	buf_release(&why);
	plan_release(&p);

	/* a changed command (new param) reruns all of a and everything below */
	CHECK_INT(run_replace_spec(&r, NULL, (char *[]){"v=2"}, 1, &err), 0);
	CHECK_INT(plan_make(&p, &r, 0, 0, &err), 0);
	CHECK_INT(p.run, 5);
	CHECK_INT(p.stages[0].reason[0], WHY_KEY);
	why = (struct buf)BUF_INIT;
	plan_explain(&p, &r, 0, 0, &why);
	CHECK(strstr(buf_str(&why), "its command changed") != NULL);
	buf_release(&why);
	plan_release(&p);
	run_release(&r);
}

/* --until keeps the stages named and all they need upstream, nothing
 * beside or after; --rerun runs done tasks again, what follows only as
 * "input reruns". */
static void test_plan_until_and_rerun(void)
{
	struct spec s;
	struct error err;
	/* a -> b -> d <- c, and e beside */
	const char *text = "[pipeline]\nname = u\n"
			   "[stage a]\ncommand = echo a\narray = 2\n"
			   "[stage b]\nafter = a\ncommand = cat ${in.a[task]}\narray = 2\n"
			   "[stage c]\ncommand = echo c\n"
			   "[stage d]\nafter = b, c\ncommand = cat ${in.b}\n"
			   "[stage e]\ncommand = echo e\n";
	CHECK_INT(spec_load(&s, write_spec("u.ini", text), NULL, 0, &err), 0);
	unsigned char keep[5];
	CHECK_INT(plan_until(NULL, &s, "b", keep, &err), 0);
	CHECK(keep[0] && keep[1] && !keep[2] && !keep[3] && !keep[4]);
	CHECK_INT(plan_until(NULL, &s, "d,e", keep, &err), 0);
	CHECK(keep[0] && keep[1] && keep[2] && keep[3] && keep[4]);
	CHECK_INT(plan_until(NULL, &s, "c,x", keep, &err), -1);
	CHECK(strstr(err.msg, "'x' is no stage of u (its stages: a, b, c, d, e)") != NULL);
	CHECK_INT(plan_until(NULL, &s, "a,", keep, &err), -1);

	struct run r;
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/urun", tmp);
	CHECK_INT(run_create(&r, &s, dir, "local", &err), 0);
	spec_release(&s);
	struct plan p;
	CHECK_INT(plan_make(&p, &r, 1, 0, &err), 0);
	CHECK_INT(plan_until(&p, &r.spec, "b", keep, &err), 0);
	CHECK_INT(p.run, 4);
	CHECK_INT(p.held, 3);
	CHECK_INT(p.skip, 3);
	CHECK_INT(p.stages[3].action[0], PLAN_SKIP);
	CHECK_INT(p.stages[3].reason[0], WHY_UNTIL);
	CHECK_INT(p.stages[1].reason[1], WHY_NEW);
	plan_release(&p);

	fake_done(&r, 0, 0, "a0");
	fake_done(&r, 0, 1, "a1");
	fake_done(&r, 1, 0, "b0");
	fake_done(&r, 1, 1, "b1");
	unsigned char a1[2] = {0, 1};
	unsigned char *marks[5] = {a1, NULL, NULL, NULL, NULL};
	CHECK_INT(plan_make_rerun(&p, &r, 0, 0, marks, &err), 0);
	CHECK_INT(p.stages[0].action[0], PLAN_SKIP);
	CHECK_INT(p.stages[0].action[1], PLAN_RUN);
	CHECK_INT(p.stages[0].reason[1], WHY_RERUN);
	CHECK_INT(p.stages[1].action[0], PLAN_SKIP);
	CHECK_INT(p.stages[1].reason[1], WHY_UPSTREAM);
	struct buf why = BUF_INIT;
	plan_explain(&p, &r, 0, 1, &why);
	CHECK(strstr(buf_str(&why), "run again as --rerun asks") != NULL);
	buf_release(&why);
	plan_release(&p);
	run_release(&r);
}

/* temp stages: a task is released once every task that reads it is done
 * (and not about to run again: `pending`); a released task is skipped
 * until a reader runs, then pulled back, up the chain. */
static void test_plan_pulls_released(void)
{
	struct spec s;
	struct error err;
	const char *text =
	    "[pipeline]\nname = t\n"
	    "[stage a]\ncommand = echo a\narray = 2\ntemp = yes\n"
	    "[stage b]\nafter = a\ncommand = cat ${in.a[task]}\narray = 2\ntemp = 1\n"
	    "[stage c]\nafter = b\ncommand = cat ${in.b}\n";
	CHECK_INT(spec_load(&s, write_spec("t.ini", text), NULL, 0, &err), 0);
	CHECK(s.stages[0].temp && s.stages[1].temp && !s.stages[2].temp);
	struct run r;
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/trun", tmp);
	CHECK_INT(run_create(&r, &s, dir, "local", &err), 0);
	spec_release(&s);
	fake_done(&r, 0, 0, "a0");
	fake_done(&r, 0, 1, "a1");
	fake_done(&r, 1, 0, "b0");
	/* a/0's reader b/0 is done: a/0 goes; a/1's (b/1) is not: it stays */
	CHECK_INT(release_inputs(&r, 1, 0, &err), 1);
	CHECK(release_done(r.dir, "a", 0) && !release_done(r.dir, "a", 1));
	fake_done(&r, 1, 1, "b1");
	fake_done(&r, 2, 0, "c");
	/* c is done but about to run again: b stays */
	struct buf path = BUF_INIT;
	task_path(&path, r.dir, "c", 0, TASK_PENDING_FILE);
	fs_write_atomic(path.s, "", 0, &err);
	CHECK_INT(release_inputs(&r, 2, 0, &err), 0);
	unlink(path.s);
	CHECK_INT(release_inputs(&r, 2, 0, &err), 2);
	CHECK_INT(release_inputs(&r, 1, 1, &err), 1);
	CHECK_INT(release_inputs(&r, 1, 1, &err), 0); /* once */
	buf_reset(&path);
	task_path(&path, r.dir, "a", 1, "out/f");
	CHECK(!fs_exists(path.s));
	buf_release(&path);
	long long files, bytes = release_bytes(r.dir, "a", 1, &files);
	CHECK(bytes == 2 && files == 1);

	struct plan p;
	CHECK_INT(plan_make(&p, &r, 0, 0, &err), 0);
	CHECK_INT(p.run, 0);
	CHECK_INT(p.stages[0].reason[1], WHY_RELEASED);
	CHECK_INT(p.stages[1].reason[0], WHY_RELEASED);
	CHECK_INT(p.stages[2].reason[0], WHY_DONE);
	plan_release(&p);

	/* c runs again: all of b needed, and so all of a */
	unsigned char c0[1] = {1};
	unsigned char *marks[3] = {NULL, NULL, c0};
	CHECK_INT(plan_make_rerun(&p, &r, 0, 0, marks, &err), 0);
	CHECK_INT(p.run, 5);
	CHECK_INT(p.stages[0].reason[0], WHY_NEEDED);
	CHECK_INT(p.stages[1].reason[1], WHY_NEEDED);
	struct buf why = BUF_INIT;
	plan_explain(&p, &r, 1, 1, &why);
	CHECK(strstr(buf_str(&why),
		     "released (temp = yes), and a task that reads them runs: c (1 of "
		     "1 tasks); it runs again first") != NULL);
	buf_reset(&why);
	plan_explain(&p, &r, 0, 1, &why);
	CHECK(strstr(buf_str(&why), "runs: b/1;") != NULL);
	buf_release(&why);
	plan_release(&p);
	/* out of memory at any allocation of that plan (its passes, the
	 * pulls): an error, never a crash or a leak (ASan) */
	int failures = 0;
	for (long n = 0; n < 200; n++) {
		error_clear(&err);
		mem_fail_after(n);
		int rc = plan_make_rerun(&p, &r, 0, 0, marks, &err);
		mem_fail_after(-1);
		plan_release(&p);
		if (rc == 0)
			break;
		failures++;
		CHECK(strstr(err.msg, "out of memory") != NULL);
	}
	CHECK(failures > 10);
	CHECK_INT(plan_make_rerun(&p, &r, 0, 0, marks, &err), 0);
	/* --until b holds c back: nothing reads a or b now, they stay released */
	unsigned char keep[3];
	CHECK_INT(plan_until(&p, &r.spec, "b", keep, &err), 0);
	CHECK_INT(p.run, 0);
	CHECK_INT(p.held, 1);
	CHECK_INT(p.stages[0].reason[1], WHY_RELEASED);
	CHECK_INT(p.stages[1].reason[0], WHY_RELEASED);
	CHECK_INT(p.stages[1].skip, 2);
	plan_release(&p);
	run_release(&r);
}

/* A run folder tmp/NAME of spec s (released) for executor. */
static int new_run(struct run *r, struct spec *s, const char *name, const char *executor)
{
	char dir[512];
	struct error err;
	snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
	int rc = run_create(r, s, dir, executor, &err);
	spec_release(s);
	return rc;
}

static void test_failed_marker_read(void)
{
	struct spec s;
	struct error err;
	CHECK_INT(spec_load(&s, write_spec("f.ini", "[stage x]\ncommand = false\n"), NULL, 0, &err), 0);
	struct run r;
	CHECK_INT(new_run(&r, &s, "run-f", "local"), 0);
	struct buf p = BUF_INIT;
	task_path(&p, r.dir, "x", 0, "");
	fs_mkdir_p(p.s, &err);
	buf_adds(&p, "failed.json");
	const char *j = "{\"kind\": \"timeout\", \"attempt\": 2, \"exit_code\": -1}";
	fs_write_atomic(p.s, j, strlen(j), &err);
	struct task_info ti;
	CHECK_INT(task_read(r.dir, "x", 0, 1, &ti, &err), 0);
	CHECK_INT(ti.state, TASK_FAILED);
	CHECK_STR(ti.kind, "timeout");
	CHECK_INT(ti.attempt, 2);
	/* a torn marker is never accepted silently: failed, kind unknown, the
	   parse error as its message (status, why and resume go on) */
	fs_write_atomic(p.s, "{\"kind\": ", 9, &err);
	CHECK_INT(task_read(r.dir, "x", 0, 1, &ti, &err), 0);
	CHECK_INT(ti.state, TASK_FAILED);
	CHECK_STR(ti.kind, "unknown");
	CHECK(strstr(ti.message, "failed.json") != NULL);
	fs_write_atomic(p.s, "[1, 2]", 6, &err); /* JSON, but not a marker */
	CHECK_INT(task_read(r.dir, "x", 0, 1, &ti, &err), 0);
	CHECK_STR(ti.kind, "unknown");
	CHECK(strstr(ti.message, "not a JSON object") != NULL);
	buf_release(&p);
	run_release(&r);
}

/* A retry by requeue, as squeue shows it: the job ends its failed attempt
 * (COMPLETING, Restarts already 1), waits (PENDING, BeginTime), then runs
 * before its wrapper writes started.json. The failed.json of attempt 1 is
 * the marker all along; its host, pid and start are never the retry's. */
static void test_sched_requeued_retry(void)
{
	struct spec s;
	struct error err;
	CHECK_INT(spec_load(&s, write_spec("rq.ini", "[stage x]\nretries = 1\ncommand = false\n"), NULL,
			    0, &err),
		  0);
	struct run r;
	CHECK_INT(new_run(&r, &s, "run-rq", "slurm"), 0);
	struct buf p = BUF_INIT;
	task_path(&p, r.dir, "x", 0, "");
	fs_mkdir_p(p.s, &err);
	buf_adds(&p, "failed.json");
	const char *j = "{\"kind\": \"exit\", \"exit_code\": 5, \"attempt\": 1, \"host\": \"n1\", "
			"\"slurm_job\": \"58_0\", \"slurm_restarts\": 0}";
	CHECK_INT(fs_write_atomic(p.s, j, strlen(j), &err), 0);
	buf_release(&p);

	struct sched_sub sub = {.stage = 0, .job_id = 58, .offset = 0, .array = "0"};
	struct slurm_job job = {.job_id = 59, .array_job_id = 58, .array_task = 0, .restarts = 1};
	struct sched_view v = {.slurm = 1, .subs = &sub, .nsubs = 1};
	v.jobs.v = &job;
	v.jobs.n = 1;
	static const struct {
		const char *state, *reason;
		int restarts, want;
	} seen[] = {
		{"RUNNING", "None", 0, TASK_FAILED},        /* attempt 1 still ending, not requeued yet */
		{"COMPLETING", "None", 1, TASK_PENDING},    /* requeued: the old attempt ends */
		{"PENDING", "BeginTime", 1, TASK_PENDING},  /* the retry waits for its start time */
		{"RUNNING", "None", 1, TASK_RUNNING},       /* the retry runs, no started.json yet */
	};
	for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
		snprintf(job.state, sizeof(job.state), "%s", seen[i].state);
		snprintf(job.reason, sizeof(job.reason), "%s", seen[i].reason);
		job.restarts = seen[i].restarts;
		struct task_info ti;
		CHECK_INT(task_read(r.dir, "x", 0, 1, &ti, &err), 0);
		CHECK_INT(ti.state, TASK_FAILED);
		sched_view_apply(&v, &r, 0, 0, &ti);
		CHECK_INT(ti.state, seen[i].want);
		CHECK_STR(ti.job, "58_0");
		CHECK_INT(ti.attempt, 1);
		if (seen[i].want != TASK_FAILED) {
			CHECK_STR(ti.host, ""); /* attempt 1's, not where the retry is */
			CHECK_INT(ti.pid, 0);
			CHECK_STR(ti.kind, "exit"); /* why tells the failure the retry follows */
			CHECK_STR(ti.sched_state, seen[i].state);
		}
	}
	run_release(&r);
}

/* group = 3: element i of a submission from task 12 runs tasks 12 + 3i ..
 * 14 + 3i; while its job runs, only the task it has started is running, the
 * others of the group wait in it. */
static void test_sched_group(void)
{
	struct spec s;
	struct error err;
	CHECK_INT(
	    spec_load(&s,
		      write_spec("grp.ini", "[stage x]\narray = 20\ngroup = 3\ncommand = true\n"),
		      NULL, 0, &err),
	    0);
	CHECK_INT(s.stages[0].res.group, 3);
	struct run r;
	CHECK_INT(new_run(&r, &s, "run-grp", "slurm"), 0);
	struct buf p = BUF_INIT;
	task_path(&p, r.dir, "x", 16, "");
	fs_mkdir_p(p.s, &err);
	buf_adds(&p, "started.json");
	char j[256];
	snprintf(j, sizeof(j),
		 "{\"host\": \"n1\", \"pid\": 1, \"attempt\": 1, \"slurm_job\": \"58_1\"}");
	CHECK_INT(fs_write_atomic(p.s, j, strlen(j), &err), 0);
	buf_release(&p);

	struct sched_sub sub = {.stage = 0, .job_id = 58, .offset = 12, .array = "0-1", .group = 3};
	struct slurm_job job = {.job_id = 60, .array_job_id = 58, .array_task = 1};
	snprintf(job.state, sizeof(job.state), "RUNNING");
	snprintf(job.reason, sizeof(job.reason), "None");
	struct sched_view v = {.slurm = 1, .subs = &sub, .nsubs = 1};
	v.jobs.v = &job;
	v.jobs.n = 1;
	int first, n;
	sched_sub_tasks(&sub, 1, 20, &first, &n);
	CHECK_INT(first, 15);
	CHECK_INT(n, 3);
	sched_sub_tasks(&sub, 2, 20, &first, &n); /* the last element: 18, 19 */
	CHECK_INT(first * 10 + n, 182);
	struct task_info ti;
	for (int t = 15; t <= 17; t++) {
		task_read(r.dir, "x", t, 0, &ti, &err);
		sched_view_apply(&v, &r, 0, t, &ti);
		CHECK_STR(ti.job, "58_1");
		CHECK_INT(ti.state, t == 16 ? TASK_RUNNING : TASK_PENDING);
		CHECK_INT(ti.in_group, t == 16 ? 0 : 3);
	}
	task_read(r.dir, "x", 14, 0, &ti, &err); /* element 0: not in squeue's answer */
	sched_view_apply(&v, &r, 0, 14, &ti);
	CHECK_STR(ti.job, "58_0");
	task_read(r.dir, "x", 11, 0, &ti, &err); /* before the offset: never submitted */
	sched_view_apply(&v, &r, 0, 11, &ti);
	CHECK_STR(ti.job, "");
	run_release(&r);
}

/* cairn runs asks squeue once for several runs: each run's view holds its
 * own jobs of the answer, by the ids in its run.json, and no other's. */
static void test_sched_view_pick(void)
{
	struct spec s;
	struct error err;
	CHECK_INT(
	    spec_load(&s, write_spec("pick.ini", "[stage x]\ncommand = true\n"), NULL, 0, &err), 0);
	struct run r;
	CHECK_INT(new_run(&r, &s, "run-pick", "slurm"), 0);
	CHECK_INT(sched_record(&r, "x", 70, 0, "0", 1, &err), 0);
	CHECK_INT(sched_record(&r, "x", 58, 0, "0", 1, &err), 0);
	struct slurm_job all[] = {
	    {.job_id = 70, .array_job_id = 70, .array_task = 0},
	    {.job_id = 99, .array_job_id = 99, .array_task = -1}, /* another run's */
	    {.job_id = 59, .array_job_id = 58, .array_task = 0},
	};
	struct slurm_jobs jobs = {.v = all, .n = 3, .cap = 3};
	struct sched_view v;
	CHECK_INT(sched_view_pick(&v, &r, &jobs, NULL, &err), 0);
	CHECK_INT(v.unreachable, 0);
	CHECK_INT((int)v.jobs.n, 2);
	CHECK_INT((int)v.jobs.v[0].array_job_id, 58); /* sorted */
	CHECK_INT((int)v.jobs.v[1].array_job_id, 70);
	CHECK_INT(v.nsubs, 2);
	sched_view_release(&v);
	/* the one call failed: every run's view says so, nothing asked again */
	CHECK_INT(sched_view_pick(&v, &r, &jobs, "slurmctld down", &err), 0);
	CHECK_INT(v.unreachable, 1);
	CHECK_STR(v.error, "slurmctld down");
	CHECK_INT((int)v.jobs.n, 0);
	sched_view_release(&v);
	run_release(&r);
}

/* mem = 1G..8G: the first attempt asks 1G, each oom doubles what the last
 * attempt had, up to 8G; the plan gives every task its own. */
static long NEXT_MEM(const struct job_res *r, long last, const char *kind)
{
	struct job_limits l = {last, 0};
	return job_next_limits(r, &l, kind).mem_mb;
}

static void test_mem_range(void)
{
	struct job_res r = {.mem_mb = 100, .mem_max_mb = 300};
	CHECK_INT(NEXT_MEM(&r, 0, NULL), 100);
	CHECK_INT(NEXT_MEM(&r, 100, "oom"), 200);
	CHECK_INT(NEXT_MEM(&r, 200, "oom"), 300); /* capped */
	CHECK_INT(NEXT_MEM(&r, 300, "oom"), 300);
	CHECK_INT(NEXT_MEM(&r, 200, "exit"), 200); /* keeps what it had */
	CHECK_INT(NEXT_MEM(&r, 0, "oom"), 200);     /* unsaid: from the start */
	CHECK_INT(NEXT_MEM(&r, 900, "exit"), 300);  /* the range shrank since */
	struct job_res fixed = {.mem_mb = 100};
	CHECK_INT(NEXT_MEM(&fixed, 100, "oom"), 100);
	struct job_res none = {0};
	CHECK_INT(NEXT_MEM(&none, 100, "oom"), 0);
	/* time alike, after a timeout; an oom leaves it */
	struct job_res t = {.time_s = 60, .time_max_s = 200, .mem_mb = 100, .mem_max_mb = 300};
	struct job_limits had = {200, 60};
	struct job_limits n = job_next_limits(&t, &had, "timeout");
	CHECK_INT(n.time_s, 120);
	CHECK_INT(n.mem_mb, 200);
	n = job_next_limits(&t, &n, "timeout");
	CHECK_INT(n.time_s, 200);
	n = job_next_limits(&t, &had, "oom");
	CHECK_INT(n.time_s, 60);
	CHECK_INT(n.mem_mb, 300);

	/* how messages say the limit that stopped a task */
	struct job_limit_view v;
	struct job_limits at = {100, 60};
	CHECK_INT(job_limit_view(&t, &at, "exit", &v), 0);
	CHECK_INT(job_limit_view(&t, &at, "oom", &v), 1);
	CHECK(v.range && v.grows);
	CHECK_STR(v.key, "mem");
	CHECK_STR(v.had, "100.0 MiB");
	CHECK_STR(v.next, "200.0 MiB");
	CHECK_STR(v.spec, "100M..300M");
	at.mem_mb = 300;
	job_limit_view(&t, &at, "oom", &v);
	CHECK(v.range && !v.grows); /* at its end */
	CHECK_INT(job_limit_view(&t, &at, "timeout", &v), 1);
	CHECK_STR(v.key, "time");
	CHECK_STR(v.had, "1:00");
	CHECK_STR(v.next, "2:00");
	CHECK_STR(v.spec, "1:00..3:20"); /* as the spec writes it: it parses back */
	job_limit_view(&fixed, NULL, "oom", &v);
	CHECK(!v.range && !v.grows);
	CHECK_STR(v.had, "100.0 MiB");
	CHECK_STR(v.spec, "100M..800M"); /* a range to suggest */
	job_limit_view(&none, NULL, "timeout", &v);
	CHECK_STR(v.had, "not set");
	CHECK_STR(v.spec, "1:00:00..8:00:00");

	struct spec s;
	struct error err;
	CHECK_INT(spec_load(&s, write_spec("mr.ini", "[stage x]\narray = 4\nmem = 1G..8G\n"
						     "command = true\n[stage y]\nmem = 2G\ncommand = true\n"
						     "time = 30..2:00:00\n"),
			    NULL, 0, &err),
		  0);
	CHECK_INT(s.stages[1].res.time_s, 1800);
	CHECK_INT(s.stages[1].res.time_max_s, 7200);
	CHECK_INT(s.stages[0].res.mem_mb, 1024);
	CHECK_INT(s.stages[0].res.mem_max_mb, 8192);
	CHECK_INT(s.stages[1].res.mem_max_mb, 0);
	struct run r2;
	CHECK_INT(new_run(&r2, &s, "run-mr", "local"), 0);
	const char *marks[4] = {NULL, "{\"kind\": \"oom\", \"mem_mb\": 2048}",
				"{\"kind\": \"exit\", \"mem_mb\": 4096}",
				"{\"kind\": \"oom\", \"mem_mb\": 8192}"};
	struct buf p = BUF_INIT;
	for (int t = 1; t < 4; t++) {
		buf_reset(&p);
		task_path(&p, r2.dir, "x", t, "");
		fs_mkdir_p(p.s, &err);
		buf_adds(&p, "failed.json");
		fs_write_atomic(p.s, marks[t], strlen(marks[t]), &err);
	}
	struct plan pl;
	CHECK_INT(plan_make(&pl, &r2, 0, 0, &err), 0);
	CHECK(pl.stages[0].limits != NULL);
	CHECK(pl.stages[1].limits != NULL); /* a time range */
	CHECK_INT(pl.stages[1].limits[0].time_s, 1800);
	CHECK_INT(pl.stages[1].limits[0].mem_mb, 2048);
	CHECK_INT(pl.stages[0].limits[0].mem_mb, 1024);
	CHECK_INT(pl.stages[0].limits[1].mem_mb, 4096);
	CHECK_INT(pl.stages[0].limits[2].mem_mb, 4096);
	CHECK_INT(pl.stages[0].limits[3].mem_mb, 8192);
	plan_release(&pl);
	buf_release(&p);
	run_release(&r2);
}

/* The wrapper's mem limit: the RSS of the command's process group, polled,
 * SIGKILL over it. A shell is over 100 KiB, not over 1 GiB. */
static void test_proc_mem_limit(void)
{
	CHECK(proc_task_rss_kb(getpgrp()) > 0);
	char *argv[] = {"/bin/sh", "-c", "sleep 3", NULL};
	pid_t pid;
	int status;
	struct rusage ru;
	struct error err;
	struct proc_limits lim = {0, 100, 0, 0, 0};
	CHECK_INT(proc_spawn(&pid, argv, NULL, -1, &err), 0);
	proc_wait(pid, &status, &ru, NULL, 1, &lim, &err);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	CHECK(lim.over_kb > 100);
	char *quick[] = {"/bin/sh", "-c", "sleep 1.2", NULL};
	struct proc_limits big = {0, 1 << 20, 0, 0, 0};
	CHECK_INT(proc_spawn(&pid, quick, NULL, -1, &err), 0);
	proc_wait(pid, &status, &ru, NULL, 1, &big, &err);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(big.over_kb, 0);
	CHECK(big.peak_kb > 100);
}

static void test_retry_on(void)
{
	CHECK(job_retry_allowed(NULL, "exit", 3));
	CHECK(!job_retry_allowed(NULL, "cancelled", 0));
	CHECK(job_retry_allowed("timeout,exit:75", "timeout", -1));
	CHECK(job_retry_allowed("timeout,exit:75", "exit", 75));
	CHECK(!job_retry_allowed("timeout,exit:75", "exit", 1));
	CHECK(!job_retry_allowed("timeout", "node_fail", -1));
	CHECK(job_retry_allowed("any", "oom", -1));
}

/* Usage as exec, why and status --usage say it: the unit steps up where
 * the number would grow long, and "of mem" only when the stage asks one. */
static void test_usage_formats(void)
{
	char b[96];
	job_format_kib(1536, b, sizeof(b));
	CHECK_STR(b, "1.5 MiB");
	job_format_kib(3LL * 1024 * 1024 + 256 * 1024, b, sizeof(b));
	CHECK_STR(b, "3.25 GiB");
	job_format_bytes(512, b, sizeof(b));
	CHECK_STR(b, "512 B");
	job_format_bytes(400012, b, sizeof(b));
	CHECK_STR(b, "390.6 KiB");
	job_format_bytes(3LL << 40, b, sizeof(b));
	CHECK_STR(b, "3.00 TiB");
	job_format_seconds(42.04, b, sizeof(b));
	CHECK_STR(b, "42.0 s");
	job_format_seconds(3723, b, sizeof(b));
	CHECK_STR(b, "1:02:03");
	job_format_rss(256, 12800, b, sizeof(b));
	CHECK_STR(b, "max RSS 12.5 MiB of mem = 256 MiB");
	job_format_rss(0, 12800, b, sizeof(b));
	CHECK_STR(b, "max RSS 12.5 MiB");
	char small[12];
	job_format_rss(64, 12800, small, sizeof(small));
	CHECK_STR(small, "max RSS 12.");
}

int main(void)
{
	if (!mkdtemp(tmp))
		return 1;
	RUN(test_spec_parses_stages_params_and_edges);
	RUN(test_spec_in_paths);
	RUN(test_spec_survives_random_damage);
	RUN(test_spec_values);
	RUN(test_spec_errors_name_file_and_line);
	RUN(test_spec_params_use_params);
	RUN(test_spec_set_values_kept_exactly);
	RUN(test_frozen_spec_opens_old_params);
	RUN(test_run_path_checked);
	RUN(test_spec_cycle_names_its_stages);
	RUN(test_spec_out_of_memory_never_crashes);
	RUN(test_manifest_detects_changes);
	RUN(test_plan_reruns_only_what_must);
	RUN(test_plan_until_and_rerun);
	RUN(test_plan_pulls_released);
	RUN(test_key_leaves_out_the_run_folder);
	RUN(test_failed_marker_read);
	RUN(test_retry_on);
	RUN(test_mem_range);
	RUN(test_proc_mem_limit);
	RUN(test_usage_formats);
	RUN(test_sched_requeued_retry);
	RUN(test_sched_group);
	RUN(test_sched_view_pick);
	struct error err;
	fs_rm_rf(tmp, &err);
	return CHECK_DONE();
}
