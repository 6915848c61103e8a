#!/usr/bin/env bash
# The Slurm facts the cairn Slurm executor relies on, checked on a real private
# cluster (tests/slurm/cluster.sh): job arrays, afterok/aftercorr dependencies
# with --kill-on-invalid-dep, array throttle, requeue from inside a job,
# srun --mpi=pmix and mpirun, a node set DOWN under running jobs, time limit
# and memory limit. docs/slurm.md ("Verified on this machine") records the
# output seen here; the "#" lines this test prints are that output.
source "$(dirname "$0")/../lib.sh"

if [ "$(id -u)" -ne 0 ] || ! [ -x /usr/sbin/slurmctld ] || ! [ -x /usr/sbin/munged ]; then
	skip slurm_cluster "needs root, slurm-wlm and munge"
	exit 0
fi
C=$T/cluster
W=$T/work
mkdir -p "$W"
on_exit "bash '$ROOT/tests/slurm/cluster.sh' stop '$C'"
t_start=$SECONDS
if ! bash "$ROOT/tests/slurm/cluster.sh" start "$C" 2>"$T/start.err"; then
	not_ok "cluster starts"
	sed 's/^/#   /' "$T/start.err"
	exit 1
fi
ok "cluster starts in $((SECONDS - t_start)) s"
eval "$(bash "$ROOT/tests/slurm/cluster.sh" env "$C")"
cd "$W" || exit 1
node=$(hostname -s)
FMT='JobID:|,JobArrayID:|,State:|,Reason:|,exit_code:|,RestartCnt:|'

# show ID...: one squeue line per job or array element, "#"-prefixed for the log.
show() { squeue --states=all --array -h -j "$(echo "$@" | tr ' ' ',')" -O "$FMT" | sed 's/ *$//; s/^/#   /'; }
# field ID KEY: a key of `scontrol show job -o ID`.
field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# wait_end SECONDS ID...: until none of the jobs is pending, running or completing.
wait_end() {
	local limit=$1 i
	shift
	for i in $(seq $((limit * 2))); do
		squeue --states=all --array -h -j "$(echo "$@" | tr ' ' ',')" -O 'State' |
			grep -qE 'PENDING|RUNNING|COMPLETING|CONFIGURING|REQUEUE|SUSPENDED' || return 0
		sleep 0.5
	done
	return 1
}
# wait_state SECONDS ID STATE
wait_state() {
	local i
	for i in $(seq $(($1 * 4))); do
		[ "$(field "$2" JobState)" = "$3" ] && return 0
		sleep 0.25
	done
	return 1
}

# --- configuration the executor reads ---------------------------------------
scontrol show config >"$T/config"
echo "# $(grep -E '^MaxArraySize' "$T/config")"
echo "# $(grep -E '^MinJobAge' "$T/config")"
echo "# $(grep -E '^MpiDefault' "$T/config")"
check_grep "MaxArraySize in scontrol show config" '^MaxArraySize +=  *[0-9]+' "$T/config"
check_grep "MinJobAge in scontrol show config" '^MinJobAge +=  *[0-9]+ sec' "$T/config"
sbatch --wrap true >"$T/sbatch.out" 2>&1
check_grep "sbatch prints 'Submitted batch job N'" '^Submitted batch job [0-9]+$' "$T/sbatch.out"
p=$(sbatch --parsable --array=0-1 --wrap true)
check "sbatch --parsable prints only the id" grep -qE '^[0-9]+$' <<<"$p"

# --- node set DOWN under running jobs (first: it kills whatever runs) --------
nd_rq=$(sbatch --parsable -o nd_rq.out --wrap 'echo attempt ${SLURM_RESTART_COUNT:-0}; sleep 120')
nd_no=$(sbatch --parsable --no-requeue -o nd_no.out --wrap 'sleep 120')
if wait_state 10 "$nd_rq" RUNNING && wait_state 10 "$nd_no" RUNNING; then
	scontrol update nodename="$node" state=down reason=cairn-test
	wait_state 10 "$nd_no" NODE_FAIL
	sleep 1
	echo "# after scontrol update nodename=$node state=down reason=cairn-test:"
	show "$nd_rq" "$nd_no"
	check_eq "node down: --no-requeue job state" "$(field "$nd_no" JobState)" NODE_FAIL
	check_eq "node down: --no-requeue job reason" "$(field "$nd_no" Reason)" NodeDown
	# 0:15 when SIGTERM killed the batch shell, 143:0 when the shell caught it
	# and exited (both seen here): the state, not the exit code, tells.
	ec=$(field "$nd_no" ExitCode)
	check "node down: --no-requeue job ExitCode 0:15 or 143:0 (got $ec)" test "$ec" = 0:15 -o "$ec" = 143:0
	check_eq "node down: requeueable job back to PENDING" "$(field "$nd_rq" JobState)" PENDING
	check_eq "node down: requeueable job Restarts" "$(field "$nd_rq" Restarts)" 1
	check_grep "node down: job log says NODE FAILURE" 'DUE TO NODE FAILURE' nd_no.out
	sed 's/^/#   log: /' nd_no.out
	scancel "$nd_rq"
	echo "# node after the DOWN (ReturnToService=2, slurmd alive): $(sinfo -h -N -p debug -o '%T %E')"
	for i in $(seq 20); do
		[ "$(sinfo -h -N -p debug -o %T)" = idle ] && break
		[ "$i" = 5 ] && scontrol update nodename="$node" state=resume
		sleep 0.5
	done
	check_eq "node idle again" "$(sinfo -h -N -p debug -o %T)" idle
else
	not_ok "node down: jobs did not start"
	show "$nd_rq" "$nd_no"
fi

# --- preemption: a job in partition "high" needs the whole node -----------
pre_no=$(sbatch --parsable --no-requeue -c 4 -o pre_no.out --wrap 'sleep 120')
pre_rq=$(sbatch --parsable -c 4 -o pre_rq.out --open-mode=append --wrap 'echo attempt ${SLURM_RESTART_COUNT:-0}; sleep 120')
if wait_state 10 "$pre_no" RUNNING && wait_state 10 "$pre_rq" RUNNING; then
	pre_hi=$(sbatch --parsable -p high -c 8 -o /dev/null --wrap 'sleep 1')
	wait_state 10 "$pre_no" PREEMPTED
	sleep 0.5
	echo "# after a job in partition high (PriorityTier=2) asked for all 8 CPUs:"
	show "$pre_no" "$pre_rq" "$pre_hi"
	check_eq "preemption: --no-requeue job state" "$(field "$pre_no" JobState)" PREEMPTED
	ec=$(field "$pre_no" ExitCode)
	check "preemption: --no-requeue job ExitCode 0:15 or 143:0 (got $ec)" test "$ec" = 0:15 -o "$ec" = 143:0
	check_grep "preemption: job log says DUE TO PREEMPTION" 'DUE TO PREEMPTION' pre_no.out
	sed 's/^/#   log: /' pre_no.out
	check_eq "preemption: requeueable job requeued (Restarts)" "$(field "$pre_rq" Restarts)" 1
	wait_end 15 "$pre_hi"
	scancel "$pre_rq"
else
	not_ok "preemption: jobs did not start"
	show "$pre_no" "$pre_rq"
fi

# --- array indices must be below MaxArraySize ---------------------------
held=$(sbatch --parsable --hold --array=1000 -o /dev/null --wrap true 2>&1)
check "--array=1000 accepted (MaxArraySize 1001)" grep -qE '^[0-9]+$' <<<"$held"
sbatch --hold --array=1001 -o /dev/null --wrap true >"$T/arr.out" 2>&1
check_grep "--array=1001 refused" 'Invalid job array specification' "$T/arr.out"
sed 's/^/#   /' "$T/arr.out"
scancel "$held" 2>/dev/null

# --- time limit: a 1-minute job (Slurm counts minutes; 0:05 rounds up) -------
to=$(sbatch --parsable --no-requeue --time=0:05 -o to.out --wrap 'sleep 300')
check_eq "--time=0:05 becomes TimeLimit" "$(field "$to" TimeLimit)" 00:01:00
to_t0=$SECONDS

# --- memory limit (task/none + jobacct_gather OverMemoryKill) ----------------
oom=$(sbatch --parsable --no-requeue --mem=50M -o oom.out \
	--wrap 'sleep 1; perl -e '\''$x = "a" x (400 * 1024 * 1024); sleep 10; print "survived\n"'\''')
oom_srun=$(sbatch --parsable --no-requeue --mem=50M -o oom_srun.out \
	--wrap 'srun perl -e '\''sleep 1; $x = "a" x (400 * 1024 * 1024); sleep 10; print "survived\n"'\''')

# --- arrays and afterok ----------------------------------------------------
ok_arr=$(sbatch --parsable --array=0-2 -o 'ok_%A_%a.out' --wrap 'echo $SLURM_ARRAY_TASK_ID > task.$SLURM_ARRAY_TASK_ID; sleep 1')
ok_dep=$(sbatch --parsable --dependency=afterok:$ok_arr --kill-on-invalid-dep=yes -o ok_dep.out --wrap 'cat task.0 task.1 task.2 | tr -d "\n"')
bad_arr=$(sbatch --parsable --array=0-2 -o /dev/null --wrap 'sleep 1; [ $SLURM_ARRAY_TASK_ID -ne 1 ] || exit 3')
bad_dep=$(sbatch --parsable --dependency=afterok:$bad_arr --kill-on-invalid-dep=yes -o /dev/null --wrap true)
# aftercorr: task i of the dependent waits for task i only; throttle %2.
cor_a=$(sbatch --parsable --array=0-3%2 -o /dev/null --wrap 'sleep 2; [ $SLURM_ARRAY_TASK_ID -ne 1 ]')
cor_b=$(sbatch --parsable --array=0-3 --dependency=aftercorr:$cor_a --kill-on-invalid-dep=yes -o /dev/null --wrap true)

# --- requeue from inside the job ------------------------------------------
cat >requeue.sh <<'EOF'
#!/bin/sh
echo "attempt SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-unset}"
if [ "${SLURM_RESTART_COUNT:-0}" -lt 1 ]; then
	t0=$(date +%s)
	scontrol requeue "$SLURM_JOB_ID"
	sleep 30
	# Reached only when SIGTERM killed the sleep before the shell (seen on a
	# loaded machine): then within a second or two, never after the 30 s.
	echo "still running $(($(date +%s) - t0)) s after requeue"
	exit 1
fi
echo done
EOF
rq=$(sbatch --parsable --open-mode=append -o requeue.out requeue.sh)
rq_dep=$(sbatch --parsable --dependency=afterok:$rq --kill-on-invalid-dep=yes -o rq_dep.out --wrap 'echo dependent ran')

# --- MPI: 2 ranks through srun --mpi=pmix and through mpirun ---------------
mpi_ok=0
if command -v mpicc >/dev/null; then
	cat >hello.c <<'EOF'
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	int rank, size, sum = 0;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	printf("rank %d of %d sum %d\n", rank, size, sum);
	MPI_Finalize();
	return 0;
}
EOF
	mpicc hello.c -o hello && mpi_ok=1
fi
if [ $mpi_ok = 1 ]; then
	mpi_srun=$(sbatch --parsable --ntasks=2 -o mpi_srun.out --wrap 'srun --mpi=pmix ./hello')
	mpi_run=$(sbatch --parsable --ntasks=2 -o mpi_run.out \
		--wrap 'OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 ./hello')
	# dist's one-sided MPI (AD-PSGD's windows, the shared batch counter) under srun
	[ -x "${CAIRN_TESTS:-}/test_dist" ] &&
		mpi_dist=$(sbatch --parsable --ntasks=2 -o mpi_dist.out --wrap "srun --mpi=pmix $CAIRN_TESTS/test_dist")
fi

# Throttle: sample the running elements of cor_a while it runs.
max_run=0
for i in $(seq 24); do
	n=$(squeue --array -h -j "$cor_a" -t RUNNING -O JobArrayID | wc -l)
	[ "$n" -gt "$max_run" ] && max_run=$n
	sleep 0.25
done
check "array throttle %2: at most 2 elements running (saw $max_run)" test "$max_run" -le 2 -a "$max_run" -ge 1

all="$ok_arr $ok_dep $bad_arr $bad_dep $cor_a $cor_b $rq $rq_dep $oom $oom_srun"
[ $mpi_ok = 1 ] && all="$all $mpi_srun $mpi_run ${mpi_dist:-}"
wait_end 60 $all || not_ok "jobs still not done after 60 s"
echo "# squeue --states=all --array -O '$FMT' after the jobs ended:"
show $all

check_eq "afterok dependent of a good array ran" "$(cat ok_dep.out)" 012
check_eq "afterok dependent: COMPLETED" "$(field "$ok_dep" JobState)" COMPLETED
bad1=$(squeue --states=all --array -h -j "$bad_arr" -O 'ArrayTaskID:|,State:|,exit_code:|' | grep '^1|' | sed 's/ *$//')
check_eq "failing array task: FAILED, exit_code 768 (= exit 3 << 8)" "$bad1" "1|FAILED|768|"
echo "#   scontrol show job ${bad_arr}_1: $(scontrol show job -o "${bad_arr}_1" | grep -oE '(JobState|Reason|ExitCode)=[^ ]+' | tr '\n' ' ')"
check_eq "afterok dependent of a failed array: CANCELLED" "$(field "$bad_dep" JobState)" CANCELLED
check_eq "afterok dependent of a failed array: DependencyNeverSatisfied" "$(field "$bad_dep" Reason)" DependencyNeverSatisfied
echo "#   scontrol show job $bad_dep: $(scontrol show job -o "$bad_dep" | grep -oE '(JobState|Reason|Dependency|ExitCode)=[^ ]+' | tr '\n' ' ')"
corr=$(squeue --states=all --array -h -j "$cor_b" -O 'ArrayTaskID:|,State:|' | sed 's/ *$//' | sort | tr '\n' ' ')
check_eq "aftercorr: only the element of the failed task is cancelled" "$corr" "0|COMPLETED| 1|CANCELLED| 2|COMPLETED| 3|COMPLETED| "

# Dependencies on jobs that already ended or that Slurm forgot (what resume meets).
dep_done=$(sbatch --parsable -o /dev/null --dependency=afterok:$ok_dep --kill-on-invalid-dep=yes --wrap true)
dep_gone=$(sbatch --parsable -o /dev/null --dependency=afterok:$ok_dep:99999999 --kill-on-invalid-dep=yes --wrap true 2>&1)
check "afterok on an unknown job id: sbatch accepts it" grep -qE '^[0-9]+$' <<<"$dep_gone"
echo "#   afterok:$ok_dep:99999999 -> $(scontrol show job -o "$dep_gone" | grep -oE 'Dependency=[^ ]+')"
wait_end 20 "$dep_done" "$dep_gone"
check_eq "afterok on a COMPLETED job: runs" "$(field "$dep_done" JobState)" COMPLETED
check_eq "afterok on an unknown job id: the unknown id is dropped, runs" "$(field "$dep_gone" JobState)" COMPLETED

check_eq "requeue: job COMPLETED in the end" "$(field "$rq" JobState)" COMPLETED
check_eq "requeue: Restarts=1" "$(field "$rq" Restarts)" 1
check_grep "requeue: second attempt sees SLURM_RESTART_COUNT=1" 'SLURM_RESTART_COUNT=1' requeue.out
late=$(sed -n 's/^still running \([0-9]*\) s after requeue$/\1/p' requeue.out | head -1)
check "requeue: first attempt stopped within 5 s (${late:-shell killed at once})" test "${late:-0}" -le 5
check_eq "requeue: afterok dependent waited and ran" "$(cat rq_dep.out 2>/dev/null)" "dependent ran"
sed 's/^/#   requeue.out: /' requeue.out

if [ $mpi_ok = 1 ]; then
	check_eq "srun --mpi=pmix: 2 ranks" "$(sort mpi_srun.out | tr '\n' ';')" "rank 0 of 2 sum 1;rank 1 of 2 sum 1;"
	check_eq "mpirun inside sbatch: 2 ranks" "$(grep '^rank' mpi_run.out | sort | tr '\n' ';')" "rank 0 of 2 sum 1;rank 1 of 2 sum 1;"
	if [ -n "${mpi_dist:-}" ]; then
		check_eq "test_dist under srun --mpi=pmix: all 5 pass (windows, shared batches)" "$(grep -c '^ok' mpi_dist.out),$(grep -c '^not ok' mpi_dist.out)" "5,0"
		echo "#   $(grep -o 'rank 0 took.*' mpi_dist.out)"
	fi
else
	skip "MPI hello" "mpicc not found"
fi

# Memory: no cgroups here, so no OUT_OF_MEMORY state; the step is killed.
echo "#   oom batch step: $(scontrol show job -o "$oom" | grep -oE '(JobState|Reason|ExitCode)=[^ ]+' | tr '\n' ' ')"
echo "#   oom srun step:  $(scontrol show job -o "$oom_srun" | grep -oE '(JobState|Reason|ExitCode)=[^ ]+' | tr '\n' ' ')"
sed 's/^/#   oom.out: /' oom.out
check_eq "memory: batch step over --mem ends FAILED" "$(field "$oom" JobState)" FAILED
check_eq "memory: batch step killed by signal 9" "$(field "$oom" ExitCode)" 0:9
check_grep "memory: job log says 'exceeded memory limit'" 'exceeded memory limit' oom.out
check "memory: the program did not survive" bash -c "! grep -q survived oom.out oom_srun.out"
check_eq "memory: srun step over --mem: batch exits 137" "$(field "$oom_srun" ExitCode)" 137:0
check_grep "memory: srun step log says 'exceeded memory limit'" 'exceeded memory limit' oom_srun.out

# jobs/slurm_cli against this cluster (its unit test in --live mode).
if [ -x "${CAIRN_TESTS:-}/test_slurm_cli" ]; then
	"$CAIRN_TESTS/test_slurm_cli" --live 2>&1 | sed -E 's/^(ok|not ok) - /\1 - slurm_cli live: /'
	[ "${PIPESTATUS[0]}" = 0 ] || not_ok "test_slurm_cli --live exited non-zero"
else
	skip "slurm_cli live" "test_slurm_cli not built (run through make test)"
fi

# Time limit: slurmctld checks limits every ~30 s, so 60-95 s after start.
wait_end 100 "$to" || not_ok "time limit job still running $((SECONDS - to_t0)) s after submission"
echo "#   time limit: $(scontrol show job -o "$to" | grep -oE '(JobState|Reason|ExitCode|RunTime)=[^ ]+' | tr '\n' ' ')"
sed 's/^/#   to.out: /' to.out
check_eq "time limit: state TIMEOUT" "$(field "$to" JobState)" TIMEOUT
check_eq "time limit: reason TimeLimit" "$(field "$to" Reason)" TimeLimit
check_grep "time limit: log says DUE TO TIME LIMIT" 'DUE TO TIME LIMIT' to.out
echo "# whole test: $((SECONDS - t_start)) s"
