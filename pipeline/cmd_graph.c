/* cairn graph SPEC|RUN: the stage graph in Graphviz DOT; for a run, stages
 * are coloured by state. */
#include <stdio.h>
#include <string.h>

#include "core/fs.h"
#include "pipeline/cli.h"

static const char graph_usage[] =
    "usage: cairn graph [SPEC|RUN]\n"
    "Prints the stage graph in Graphviz DOT. For a run folder, stages are coloured\n"
    "by state (green done, red failed, yellow running, grey pending). Without an\n"
    "argument: the newest run folder in runs/.\n"
    "example: cairn graph configs/demo.ini | dot -Tpng -o demo.png\n";

static void print_dot(const struct spec *s, const struct run_status *st)
{
	printf("digraph \"%s\" {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", "
	       "fillcolor=white, fontname=\"Helvetica\"];\n",
	       s->name);
	for (int k = 0; k < s->nstages; k++) {
		int i = s->order[k];
		const struct spec_stage *stg = &s->stages[i];
		const char *color = "white";
		char counts[128] = "";
		if (st) {
			const struct stage_counts *c = &st->stages[i];
			color = c->failed	   ? "#f4a6a6"
				: c->running	   ? "#f7e08a"
				: c->cancelled	   ? "#d9b3ff"
				: c->done == c->tasks ? "#a8e0a8"
						      : "#e0e0e0";
			snprintf(counts, sizeof(counts), "\\n%lld/%lld done%s%s", c->done, c->tasks,
				 c->failed ? ", failed" : "", c->released ? ", released" : "");
		}
		/* temp stages dashed: their outputs go once read */
		printf("  \"%s\" [label=\"%s\\n%d task%s%s%s\", fillcolor=\"%s\"%s];\n", stg->name,
		       stg->name, stg->ntasks, stg->ntasks == 1 ? "" : "s",
		       stg->temp ? ", temp" : "", counts, color,
		       stg->temp ? ", style=\"rounded,filled,dashed\"" : "");
	}
	for (int i = 0; i < s->nstages; i++)
		for (int e = 0; e < s->stages[i].nin; e++)
			printf("  \"%s\" -> \"%s\"%s;\n", s->stages[s->stages[i].in[e].from].name,
			       s->stages[i].name, s->stages[i].in[e].one_to_one ? " [label=\"1:1\"]" : "");
	printf("}\n");
}

int cmd_graph(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, graph_usage))
		return 0;
	if (argc > 2) {
		fputs(graph_usage, stderr);
		return 2;
	}
	struct error err;
	if (argc == 1 || fs_is_dir(argv[1])) { /* no argument: the newest run */
		struct run r;
		struct run_status st;
		if (cli_open_run("graph", argc == 1 ? NULL : argv[1], &r) < 0)
			return 2;
		if (status_collect(&r, &st, &err) < 0) {
			fprintf(stderr, "cairn graph: %s\n", err.msg);
			status_release(&st);
			run_release(&r);
			return 2;
		}
		print_dot(&r.spec, &st);
		status_release(&st);
		run_release(&r);
		return 0;
	}
	struct spec s;
	if (spec_load(&s, argv[1], NULL, 0, &err) < 0) {
		fprintf(stderr, "cairn graph: %s\n", err.msg);
		spec_release(&s);
		return 2;
	}
	print_dot(&s, NULL);
	spec_release(&s);
	return 0;
}
