#!/usr/bin/env bash
# bench/gen_spec.sh N: writes to stdout the benchmark DAG as a cairn spec:
# two stages, one-to-one, N tasks each (2N tasks in all). Stage a writes one
# file per task; task i of stage b reads a's file i and writes its own.
# bench/snakemake.sh builds the same DAG as a Snakefile.
#   bench/gen_spec.sh 1000 > /tmp/bench-2000.ini    # 2,000 tasks
set -eu
if [ $# -ne 1 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: bench/gen_spec.sh N   (N tasks per stage, N >= 1)" >&2
	exit 2
fi
n=$1
cat <<INI
; benchmark DAG: 2 stages x $n tasks, one-to-one (bench/gen_spec.sh $n)
[pipeline]
name = bench-$n

[stage a]
command = echo \${task} > \${out}/a.txt
array = $n

[stage b]
after = a
command = cat \${in.a[task]}/a.txt > \${out}/b.txt
array = $n
INI
