/* Unit tests of jobs/slurm_cli: parsers on output captured from slurm-wlm
 * 22.05.8 (Debian 12) on the private test cluster, the failure-kind table,
 * and sbatch's retry with a fake sbatch that fails transiently (the one fake
 * used here). With --live (run by tests/integration/slurm_cluster.sh with
 * SLURM_CONF set) it also drives the real commands against that cluster. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/clock.h"
#include "core/fs.h"
#include "core/mem.h"
#include "jobs/slurm_cli.h"

/* `scontrol show job -o` lines as printed by this Slurm (tests/slurm/cluster.sh). */
static const char show_failed[] =
	"JobId=33 ArrayJobId=33 ArrayTaskId=1 JobName=cairn-demo-a UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901740 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:01 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-11-24T14:09:04 EligibleTime=2026-11-24T14:09:04 AccrueTime=Unknown StartTime=2026-11-24T14:09:04 EndTime=2026-11-24T14:09:05 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-24T14:09:04 Scheduler=Backfill Partition=debug AllocNode:Sid=localhost:5417 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= \n";
static const char show_depnever[] =
	"JobId=34 JobName=cairn-demo-b UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901739 Nice=0 Account=(null) QOS=(null) JobState=CANCELLED Reason=DependencyNeverSatisfied Dependency=afterok:33_*(failed) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-24T14:09:04 EligibleTime=Unknown AccrueTime=Unknown StartTime=2026-11-24T14:09:05 EndTime=2026-11-24T14:09:05 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-24T14:09:04 Scheduler=Main Partition=debug AllocNode:Sid=localhost:5417 ReqNodeList=(null) ExcNodeList=(null) NodeList= NumNodes=1 NumCPUs=1 NumTasks=N/A CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= KillOInInvalidDependent=Yes \n";
static const char show_oom[] =
	"JobId=35 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901738 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=JobLaunchFailure Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:9 RunTime=00:00:02 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-11-24T14:09:04 EligibleTime=2026-11-24T14:09:04 AccrueTime=2026-11-24T14:09:04 StartTime=2026-11-24T14:09:04 EndTime=2026-11-24T14:09:06 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-24T14:09:04 Scheduler=Backfill Partition=debug AllocNode:Sid=localhost:5417 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=50M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryNode=50M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= \n";
static const char show_pending_array[] =
	"JobId=36 ArrayJobId=36 ArrayTaskId=0-2%1 ArrayTaskThrottle=1 JobName=cairn-pend UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901737 Nice=0 Account=(null) QOS=(null) JobState=PENDING Reason=BeginTime Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-24T14:09:04 EligibleTime=2026-11-24T14:19:04 AccrueTime=2026-11-24T14:19:04 StartTime=2026-11-24T14:19:04 EndTime=Unknown Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-24T14:09:04 Scheduler=Main Partition=debug AllocNode:Sid=localhost:5417 ReqNodeList=(null) ExcNodeList=(null) NodeList= NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= \n";
static const char show_node_fail[] =
	"JobId=39 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901735 Nice=0 Account=(null) QOS=(null) JobState=NODE_FAIL Reason=NodeDown Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:00:02 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-11-24T14:09:08 EligibleTime=2026-11-24T14:09:08 AccrueTime=2026-11-24T14:09:08 StartTime=2026-11-24T14:09:08 EndTime=2026-11-24T14:09:10 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-24T14:09:08 Scheduler=Backfill Partition=debug AllocNode:Sid=localhost:5417 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= \n";
static const char show_requeued_cancelled[] =
	"JobId=37 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901736 Nice=0 Account=(null) QOS=(null) JobState=CANCELLED Reason=BeginTime Dependency=(null) Requeue=1 Restarts=1 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-11-24T14:09:10 EligibleTime=2026-11-24T14:09:21 AccrueTime=2026-11-24T14:09:21 StartTime=2026-11-24T14:09:16 EndTime=2026-11-24T14:09:16 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-24T14:09:04 Scheduler=Main Partition=debug AllocNode:Sid=localhost:5417 ReqNodeList=(null) ExcNodeList=(null) NodeList= NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= \n";
static const char show_timeout[] =
	"JobId=40 JobName=cairn-slow UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901734 Nice=0 Account=(null) QOS=(null) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:01:07 TimeLimit=00:01:00 TimeMin=N/A SubmitTime=2026-11-24T14:09:16 EligibleTime=2026-11-24T14:09:16 AccrueTime=2026-11-24T14:09:16 StartTime=2026-11-24T14:09:16 EndTime=2026-11-24T14:10:23 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-24T14:09:16 Scheduler=Backfill Partition=debug AllocNode:Sid=localhost:5417 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power=\n";

static const char config_sample[] =
	"Configuration data as of 2026-11-24T14:09:12\n"
	"AccountingStorageBackupHost = (null)\n"
	"AccountingStorageEnforce = none\n"
	"MaxArraySize            = 1001\n"
	"MaxJobCount             = 200000\n"
	"MinJobAge               = 300 sec\n"
	"MpiDefault              = pmix\n"
	"SLURM_VERSION           = 22.05.8\n";

/* squeue --states=all --array -h -O slurm_squeue_format, same cluster. */
static const char *const squeue_sample[] = {
	"34|34|34|N/A|CANCELLED|DependencyNeverSatisfied|0|0||",
	"38|33_0|33|0|COMPLETED|None|0|0|vm|",
	"33|33_1|33|1|FAILED|NonZeroExitCode|768|0|vm|",
	"35|35|35|N/A|FAILED|JobLaunchFailure|9|0|vm|",
	"39|39|39|N/A|NODE_FAIL|NodeDown|15|0|vm|",
	"36|36_0|36|0|PENDING|BeginTime|0|0||",
	"37|37|37|N/A|PENDING|BeginTime|0|1||",
	"40|40|40|N/A|TIMEOUT|TimeLimit|15|0|vm|",
	"8|8|8|N/A|FAILED|NonZeroExitCode|35072|0|vm|", /* srun step over --mem: exit 137 */
	"1|1|1|N/A|PREEMPTED|None|15|0|vm|",              /* --no-requeue job preempted */
};

static void test_parse_sbatch(void)
{
	long id = 0;
	CHECK_INT(slurm_parse_sbatch("Submitted batch job 1\n", &id), 0);
	CHECK_INT(id, 1);
	CHECK_INT(slurm_parse_sbatch("4242\n", &id), 0);
	CHECK_INT(id, 4242);
	CHECK_INT(slurm_parse_sbatch("77;cairn\n", &id), 0);
	CHECK_INT(id, 77);
	CHECK_INT(slurm_parse_sbatch("", &id), -1);
	CHECK_INT(slurm_parse_sbatch("sbatch: error: oops\n", &id), -1);
	CHECK_INT(slurm_parse_sbatch("12abc\n", &id), -1);
	CHECK_INT(slurm_parse_sbatch("0\n", &id), -1);
}

static void test_transient(void)
{
	CHECK(slurm_is_transient("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"));
	CHECK(slurm_is_transient("sbatch: error: Batch job submission failed: Resource temporarily unavailable"));
	CHECK(slurm_is_transient("sbatch: error: Slurm controller not responding, sleeping and retrying"));
	CHECK(slurm_is_transient("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"));
	CHECK(slurm_is_transient("error: please try again later"));
	CHECK(!slurm_is_transient("sbatch: error: Batch job submission failed: Invalid partition name specified"));
	CHECK(!slurm_is_transient("sbatch: error: Batch job submission failed: Invalid job array specification"));
	CHECK(!slurm_is_transient(""));
}

static void test_parse_squeue(void)
{
	struct slurm_job j;
	struct error err;
	size_t n = sizeof(squeue_sample) / sizeof(squeue_sample[0]);
	for (size_t i = 0; i < n; i++)
		CHECK_INT(slurm_parse_squeue_line(squeue_sample[i], &j, &err), 0);

	CHECK_INT(slurm_parse_squeue_line(squeue_sample[2], &j, &err), 0);
	CHECK_INT(j.job_id, 33);
	CHECK_INT(j.array_job_id, 33);
	CHECK_INT(j.array_task, 1);
	CHECK_STR(j.state, "FAILED");
	CHECK_STR(j.reason, "NonZeroExitCode");
	CHECK_INT(j.exit_code, 3);
	CHECK_INT(j.signal, 0);
	CHECK_STR(j.nodes, "vm");

	CHECK_INT(slurm_parse_squeue_line(squeue_sample[1], &j, &err), 0);
	CHECK_INT(j.job_id, 38); /* the element's own id once it ran */
	CHECK_INT(j.array_job_id, 33);
	CHECK_INT(j.array_task, 0);

	CHECK_INT(slurm_parse_squeue_line(squeue_sample[0], &j, &err), 0);
	CHECK_INT(j.array_task, -1);
	CHECK_STR(j.reason, "DependencyNeverSatisfied");
	CHECK_STR(j.nodes, "");

	CHECK_INT(slurm_parse_squeue_line(squeue_sample[3], &j, &err), 0);
	CHECK_INT(j.exit_code, 0);
	CHECK_INT(j.signal, 9);

	CHECK_INT(slurm_parse_squeue_line(squeue_sample[6], &j, &err), 0);
	CHECK_INT(j.restarts, 1);

	CHECK_INT(slurm_parse_squeue_line(squeue_sample[8], &j, &err), 0);
	CHECK_INT(j.exit_code, 137);
	CHECK_INT(j.signal, 0);

	CHECK_INT(slurm_parse_squeue_line(squeue_sample[9], &j, &err), 0);
	CHECK_INT(slurm_failure_kind(j.state, j.reason, j.exit_code, j.signal), SLURM_FAIL_PREEMPTED);

	CHECK_INT(slurm_parse_squeue_line("34|34|34|N/A|CANCELLED", &j, &err), -1);
	CHECK(strstr(err.msg, "4 fields") != NULL);
	CHECK_INT(slurm_parse_squeue_line("x|34|34|N/A|CANCELLED|None|0|0||", &j, &err), -1);
	CHECK_INT(slurm_parse_squeue_line("34|34|34|two|CANCELLED|None|0|0||", &j, &err), -1);
}

static void test_parse_show_job(void)
{
	struct slurm_job_info info = {0};
	struct error err;
	CHECK_INT(slurm_parse_show_job(show_failed, &info, &err), 0);
	CHECK_INT(info.job_id, 33);
	CHECK_INT(info.array_job_id, 33);
	CHECK_INT(info.array_task, 1);
	CHECK_STR(info.name, "cairn-demo-a");
	CHECK_STR(info.state, "FAILED");
	CHECK_STR(info.reason, "NonZeroExitCode");
	CHECK_INT(info.exit_code, 3);
	CHECK_INT(info.signal, 0);
	CHECK_INT(info.restarts, 0);
	CHECK_INT(info.requeue, 1);
	CHECK_STR(info.nodes, "vm");
	CHECK_STR(info.start_time, "2026-11-24T14:09:04");
	CHECK_STR(info.end_time, "2026-11-24T14:09:05");
	CHECK_STR(info.std_out, "/dev/null");

	CHECK_INT(slurm_parse_show_job(show_depnever, &info, &err), 0);
	CHECK_INT(info.array_job_id, 0);
	CHECK_INT(info.array_task, -1);
	CHECK_STR(info.state, "CANCELLED");
	CHECK_STR(info.reason, "DependencyNeverSatisfied");
	CHECK_STR(info.nodes, "");

	CHECK_INT(slurm_parse_show_job(show_oom, &info, &err), 0);
	CHECK_INT(info.exit_code, 0);
	CHECK_INT(info.signal, 9);
	CHECK_INT(info.requeue, 0);

	CHECK_INT(slurm_parse_show_job(show_pending_array, &info, &err), 0);
	CHECK_STR(info.state, "PENDING");
	CHECK_INT(info.array_task, -1); /* "0-2%1": the unsplit remainder */

	CHECK_INT(slurm_parse_show_job(show_node_fail, &info, &err), 0);
	CHECK_STR(info.reason, "NodeDown");
	CHECK_INT(info.signal, 15);

	CHECK_INT(slurm_parse_show_job(show_requeued_cancelled, &info, &err), 0);
	CHECK_INT(info.restarts, 1);

	CHECK_INT(slurm_parse_show_job(show_timeout, &info, &err), 0);
	CHECK_STR(info.state, "TIMEOUT");
	CHECK_STR(info.time_limit, "00:01:00");
	CHECK_STR(info.run_time, "00:01:07");

	/* A name with spaces stays whole. */
	CHECK_INT(slurm_parse_show_job("JobId=5 JobName=my long job UserId=root(0) JobState=RUNNING Reason=None "
				       "ExitCode=0:0",
				       &info, &err),
		  0);
	CHECK_STR(info.name, "my long job");
	CHECK_STR(info.state, "RUNNING");
	CHECK_INT(slurm_parse_show_job("garbage", &info, &err), -1);
}

static void test_parse_config(void)
{
	struct slurm_config cfg = {0};
	struct error err;
	CHECK_INT(slurm_parse_config(config_sample, &cfg, &err), 0);
	CHECK_INT(cfg.max_array_size, 1001);
	CHECK_INT(cfg.min_job_age, 300);
	CHECK_STR(cfg.mpi_default, "pmix");
	CHECK_STR(cfg.version, "22.05.8");
	CHECK_INT(slurm_parse_config("Foo = bar\n", &cfg, &err), -1);
}

static void test_failure_kinds(void)
{
	static const char *const names[] = {"exit",	 "signal",    "oom",	   "timeout", "preempted",
					    "node_fail", "cancelled", "dependency", "lost"};
	CHECK_INT(SLURM_NFAILURES, 9);
	for (int i = 0; i < SLURM_NFAILURES; i++) {
		CHECK_STR(slurm_failure_name(i), names[i]);
		CHECK_INT(slurm_failure_from_name(names[i]), i);
	}
	CHECK_INT(slurm_failure_from_name("bogus"), -1);

	struct {
		const char *state, *reason;
		int exit_code, signal, want;
	} t[] = {
		{"FAILED", "NonZeroExitCode", 3, 0, SLURM_FAIL_EXIT},
		{"FAILED", "NonZeroExitCode", 137, 0, SLURM_FAIL_EXIT},
		{"FAILED", "JobLaunchFailure", 0, 9, SLURM_FAIL_SIGNAL}, /* also: over --mem without cgroups */
		{"OUT_OF_MEMORY", "OutOfMemory", 0, 9, SLURM_FAIL_OOM},
		{"TIMEOUT", "TimeLimit", 0, 15, SLURM_FAIL_TIMEOUT},
		{"DEADLINE", "None", 0, 0, SLURM_FAIL_TIMEOUT},
		{"PREEMPTED", "None", 0, 15, SLURM_FAIL_PREEMPTED},
		{"NODE_FAIL", "NodeDown", 0, 15, SLURM_FAIL_NODE_FAIL},
		{"BOOT_FAIL", "None", 0, 0, SLURM_FAIL_NODE_FAIL},
		{"CANCELLED", "None", 0, 15, SLURM_FAIL_CANCELLED},
		{"CANCELLED", "BeginTime", 0, 0, SLURM_FAIL_CANCELLED},
		{"CANCELLED", "DependencyNeverSatisfied", 0, 0, SLURM_FAIL_DEPENDENCY},
		{"PENDING", "DependencyNeverSatisfied", 0, 0, SLURM_FAIL_DEPENDENCY},
		{"", "", 0, 0, SLURM_FAIL_LOST},
		{NULL, NULL, 0, 0, SLURM_FAIL_LOST},
		{"COMPLETED", "None", 0, 0, -1},
		{"PENDING", "Dependency", 0, 0, -1},
		{"PENDING", "BeginTime", 0, 0, -1}, /* requeued, waiting for its next attempt */
		{"RUNNING", "None", 0, 0, -1},
		{"COMPLETING", "None", 0, 0, -1},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int got = slurm_failure_kind(t[i].state, t[i].reason, t[i].exit_code, t[i].signal);
		if (got != t[i].want)
			printf("#   %s/%s %d:%d\n", t[i].state ? t[i].state : "NULL", t[i].reason ? t[i].reason : "NULL",
			       t[i].exit_code, t[i].signal);
		CHECK_INT(got, t[i].want);
	}

	/* What slurmstepd wrote into the jobs' logs on the test cluster. */
	CHECK_INT(slurm_log_failure_kind("slurmstepd-vm: error: StepId=7.batch exceeded memory limit (159920128 > "
					 "52428800), being killed\nslurmstepd-vm: error: Exceeded job memory limit\n"),
		  SLURM_FAIL_OOM);
	CHECK_INT(slurm_log_failure_kind("slurmstepd-vm: error: *** JOB 6 ON vm CANCELLED AT 2026-11-24T14:08:03 DUE "
					 "TO TIME LIMIT ***\n"),
		  SLURM_FAIL_TIMEOUT);
	CHECK_INT(slurm_log_failure_kind("slurmstepd-vm: error: *** JOB 4 ON vm CANCELLED AT 2026-11-24T14:06:35 DUE "
					 "TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***\n"),
		  SLURM_FAIL_NODE_FAIL);
	CHECK_INT(slurm_log_failure_kind("slurmstepd-vm: error: *** JOB 19 ON vm CANCELLED AT 2026-11-24T14:06:39 DUE "
					 "TO JOB REQUEUE ***\n"),
		  -1);
	CHECK_INT(slurm_log_failure_kind("slurmstepd-vm: error: *** JOB 1 ON vm CANCELLED AT 2026-11-24T14:48:29 DUE "
					 "TO PREEMPTION ***\n"),
		  SLURM_FAIL_PREEMPTED);
	CHECK_INT(slurm_log_failure_kind("hello\n"), -1);
	CHECK_INT(slurm_log_failure_kind(NULL), -1);
}

/* What `scontrol show job -o $SLURM_JOB_ID` said inside a job whose batch
 * script trapped SIGTERM, on the test cluster (22.05.8): JobState is
 * COMPLETING for scancel, preemption and time limit alike. */
static void test_stop_kind(void)
{
	struct {
		const char *line;
		int restarts, want, requeued;
	} t[] = {
		/* scancel (cairn cancel), --requeue or not */
		{"JobId=1 JobName=p JobState=COMPLETING Reason=None Dependency=(null) Requeue=0 Restarts=0 ExitCode=0:0", 0,
		 SLURM_FAIL_CANCELLED, 0},
		/* scancel of a job that a retry requeued once before */
		{"JobId=2 JobName=p JobState=COMPLETING Reason=None Dependency=(null) Requeue=1 Restarts=1 ExitCode=0:0", 1,
		 SLURM_FAIL_CANCELLED, 0},
		/* time limit, --no-requeue and --requeue alike */
		{"JobId=13 JobName=p JobState=COMPLETING Reason=TimeLimit Dependency=(null) Requeue=0 Restarts=0 ExitCode=0:0",
		 0, SLURM_FAIL_TIMEOUT, 0},
		/* preempted with PreemptMode=REQUEUE, --requeue: Slurm requeued it */
		{"JobId=3 JobName=p JobState=COMPLETING Reason=None Dependency=(null) Requeue=1 Restarts=1 ExitCode=0:0", 0,
		 SLURM_FAIL_PREEMPTED, 1},
		/* node set DOWN: --no-requeue, then --requeue (requeued by Slurm) */
		{"JobId=12 JobName=p JobState=NODE_FAIL Reason=NodeDown Dependency=(null) Requeue=0 Restarts=0 ExitCode=0:0", 0,
		 SLURM_FAIL_NODE_FAIL, 0},
		{"JobId=11 JobName=p JobState=PENDING Reason=None Dependency=(null) Requeue=1 Restarts=1 ExitCode=0:0", 0,
		 SLURM_FAIL_PREEMPTED, 1},
		/* a SIGTERM from outside Slurm (kill): the job still runs */
		{"JobId=4 JobName=p JobState=RUNNING Reason=None Dependency=(null) Requeue=0 Restarts=0 ExitCode=0:0", 0,
		 SLURM_FAIL_CANCELLED, 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct slurm_job_info info;
		struct error err;
		int requeued = -1;
		CHECK_INT(slurm_parse_show_job(t[i].line, &info, &err), 0);
		CHECK_INT(slurm_stop_kind(&info, t[i].restarts, &requeued), t[i].want);
		CHECK_INT(requeued, t[i].requeued);
	}
	CHECK(slurm_reason_stuck("PartitionConfig"));
	CHECK(slurm_reason_stuck("BadConstraints"));
	CHECK(slurm_reason_stuck("ReqNodeNotAvail,_UnavailableNodes:vm"));
	CHECK(!slurm_reason_stuck("Resources"));
	CHECK(!slurm_reason_stuck("Priority"));
	CHECK(!slurm_reason_stuck("BeginTime"));
	CHECK(!slurm_reason_stuck("Dependency"));
	CHECK(!slurm_reason_stuck(NULL));
}

/* ---- sbatch retry against a fake sbatch ------------------------------- */

static char fake_dir[256];

/* The fake: fails with MESSAGE for the first FAILS calls, then prints the
 * --parsable id 4242; HANG=1 makes the first call hang instead. It records
 * its arguments and counts its calls in files next to it. */
static const char fake_sbatch[] =
	"#!/bin/sh\n"
	"d=$(dirname \"$0\")\n"
	"n=$(cat \"$d/count\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$d/count\"\n"
	"echo \"$*\" > \"$d/args\"\n"
	"if [ \"${FAKE_HANG:-0}\" = 1 ] && [ $n = 1 ]; then exec sleep 30; fi\n"
	"if [ $n -le \"${FAKE_FAILS:-0}\" ]; then echo \"sbatch: error: $FAKE_MESSAGE\" >&2; exit 1; fi\n"
	"echo 4242\n";

static int fake_setup(void)
{
	snprintf(fake_dir, sizeof(fake_dir), "/tmp/cairn-fake-sbatch.XXXXXX");
	if (!mkdtemp(fake_dir))
		return -1;
	char path[512];
	snprintf(path, sizeof(path), "%s/sbatch", fake_dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(fake_sbatch, f);
	if (fclose(f) != 0 || chmod(path, 0755) != 0)
		return -1;
	setenv("CAIRN_SLURM_BIN", fake_dir, 1);
	return 0;
}

static void fake_reset(const char *fails, const char *message, const char *hang)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/count", fake_dir);
	unlink(path);
	setenv("FAKE_FAILS", fails, 1);
	setenv("FAKE_MESSAGE", message, 1);
	setenv("FAKE_HANG", hang, 1);
	slurm_calls_reset();
}

static long fake_count(void)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/count", fake_dir);
	FILE *f = fopen(path, "r");
	long n = 0;
	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

static void test_sbatch_retry(void)
{
	struct error err;
	long id = 0;
	if (fake_setup() < 0) {
		CHECK(!"cannot write the fake sbatch");
		return;
	}
	slurm_set_retry(4, 0.01, 0.05);

	/* Two transient failures, then success: 3 calls, the extras passed through. */
	fake_reset("2", "Batch job submission failed: Socket timed out on send/recv operation", "0");
	const char *extra[] = {"--array=0-9%2", "--job-name=cairn-x", NULL};
	CHECK_INT(slurm_sbatch("job.sh", extra, &id, &err), 0);
	CHECK_INT(id, 4242);
	CHECK_INT(fake_count(), 3);
	CHECK_INT(slurm_calls(SLURM_SBATCH), 3);
	char path[512], *args = NULL;
	size_t len;
	struct error ferr;
	snprintf(path, sizeof(path), "%s/args", fake_dir);
	CHECK_INT(fs_read_all(path, &args, &len, &ferr), 0);
	CHECK_STR(args, "--parsable --array=0-9%2 --job-name=cairn-x job.sh\n");
	mem_free(args);

	/* Transient every time: gives up after 4 attempts with the message. */
	fake_reset("99", "Batch job submission failed: Resource temporarily unavailable", "0");
	CHECK_INT(slurm_sbatch("job.sh", NULL, &id, &err), -1);
	CHECK_INT(fake_count(), 4);
	CHECK(strstr(err.msg, "Resource temporarily unavailable") != NULL);
	CHECK(strstr(err.msg, "attempt 4") != NULL);

	/* A definite error: no retry. */
	fake_reset("99", "Batch job submission failed: Invalid partition name specified", "0");
	CHECK_INT(slurm_sbatch("job.sh", NULL, &id, &err), -1);
	CHECK_INT(fake_count(), 1);
	CHECK(strstr(err.msg, "Invalid partition name") != NULL);

	/* No answer: killed after the timeout, then retried. */
	fake_reset("0", "", "1");
	slurm_set_timeout(0.5);
	double t0 = clock_now();
	CHECK_INT(slurm_sbatch("job.sh", NULL, &id, &err), 0);
	CHECK(clock_now() - t0 < 5);
	CHECK_INT(fake_count(), 2);
	slurm_set_timeout(60);

	/* A binary that is not there. */
	setenv("CAIRN_SLURM_BIN", "/nonexistent", 1);
	slurm_calls_reset();
	CHECK_INT(slurm_sbatch("job.sh", NULL, &id, &err), -1);
	CHECK(strstr(err.msg, "cannot run /nonexistent/sbatch") != NULL);
	CHECK_INT(slurm_calls(SLURM_SBATCH), 1);

	unsetenv("CAIRN_SLURM_BIN");
	struct error rerr;
	fs_rm_rf(fake_dir, &rerr);
	slurm_set_retry(6, 1, 30);
}

/* ---- Slurm unreachable: fail fast, but wait for a slow controller ------ */

/* Fakes: squeue sleeps FAKE_SLEEP s, then prints one job (hang: sleeps as
 * one process, as squeue retrying does); scontrol ping
 * prints FAKE_PING and exits FAKE_PING_RC (calls counted in pings); scancel
 * says for each id what 22.05's scancel says with slurmctld down. */
static const char fake_squeue[] = "#!/bin/sh\n"
				  "[ \"$FAKE_SLEEP\" != hang ] || exec sleep 30\n"
				  "sleep \"${FAKE_SLEEP:-0}\"\n"
				  "echo '5|5|5|N/A|RUNNING|None|0|0|vm|'\n";
static const char fake_scontrol[] = "#!/bin/sh\n"
				    "echo \"$1\" >> \"$(dirname \"$0\")/pings\"\n"
				    "echo \"$FAKE_PING\"\n"
				    "exit \"${FAKE_PING_RC:-0}\"\n";
static const char fake_scancel[] =
	"#!/bin/sh\n"
	"for id; do echo \"scancel: error: Kill job error on job id $id: Unable to contact slurm controller "
	"(connect failure)\" >&2; done\n"
	"exit 8\n";

static int write_fake(const char *dir, const char *name, const char *body)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(body, f);
	return fclose(f) != 0 || chmod(path, 0755) != 0 ? -1 : 0;
}

static long count_lines(const char *path)
{
	char *text = NULL;
	size_t len = 0;
	struct error err;
	long n = 0;
	if (fs_read_all(path, &text, &len, &err) == 0)
		for (size_t i = 0; i < len; i++)
			n += text[i] == '\n';
	mem_free(text);
	return n;
}

static void test_unreachable(void)
{
	char dir[] = "/tmp/cairn-fake-slurm.XXXXXX", pings[512];
	if (!mkdtemp(dir) || write_fake(dir, "squeue", fake_squeue) < 0 ||
	    write_fake(dir, "scontrol", fake_scontrol) < 0 || write_fake(dir, "scancel", fake_scancel) < 0) {
		CHECK(!"cannot write the fakes");
		return;
	}
	snprintf(pings, sizeof(pings), "%s/pings", dir);
	char *conf = getenv("SLURM_CONF") ? mem_strdup(getenv("SLURM_CONF")) : NULL;
	unsetenv("SLURM_CONF");
	setenv("CAIRN_SLURM_BIN", dir, 1);
	struct slurm_jobs jobs;
	struct error err;
	long ids[] = {5, 6, 7};
	slurm_jobs_init(&jobs);

	/* An answer within a second: no ping. */
	setenv("FAKE_SLEEP", "0", 1);
	setenv("FAKE_PING", "Slurmctld(primary) at vm is DOWN", 1);
	setenv("FAKE_PING_RC", "1", 1);
	CHECK_INT(slurm_squeue(ids, 1, &jobs, &err), 0);
	CHECK_INT((long)jobs.n, 1);
	CHECK_INT(count_lines(pings), 0);

	/* slurmctld down (squeue would retry for 18 s): stopped after 1 s. */
	setenv("FAKE_SLEEP", "hang", 1);
	double t0 = clock_now();
	CHECK_INT(slurm_squeue(ids, 1, &jobs, &err), -1);
	CHECK(clock_now() - t0 < 4);
	CHECK(strstr(err.msg, "`scontrol ping` says \"Slurmctld(primary) at vm is DOWN\"") != NULL);
	CHECK(slurm_is_unreachable(err.msg));
	CHECK_INT(count_lines(pings), 1);

	/* Slow but up: the ping says UP, so squeue is waited for. */
	setenv("FAKE_SLEEP", "1.8", 1);
	setenv("FAKE_PING", "Slurmctld(primary) at vm is UP", 1);
	setenv("FAKE_PING_RC", "0", 1);
	slurm_jobs_release(&jobs);
	CHECK_INT(slurm_squeue(ids, 1, &jobs, &err), 0);
	CHECK_INT((long)jobs.n, 1);
	CHECK_INT(count_lines(pings), 2);

	/* A backup controller up is enough. */
	setenv("FAKE_PING", "Slurmctld(primary) at a is DOWN\nSlurmctld(backup) at b is UP", 1);
	setenv("FAKE_PING_RC", "1", 1);
	slurm_jobs_release(&jobs);
	CHECK_INT(slurm_squeue(ids, 1, &jobs, &err), 0);
	CHECK_INT((long)jobs.n, 1);

	/* SLURM_CONF naming no file (Slurm would wait 60 s): at once, no squeue. */
	setenv("SLURM_CONF", "/nonexistent/slurm.conf", 1);
	slurm_calls_reset();
	CHECK_INT(slurm_squeue(ids, 1, &jobs, &err), -1);
	CHECK_INT(slurm_calls(SLURM_SQUEUE), 0);
	CHECK(strstr(err.msg, "SLURM_CONF=/nonexistent/slurm.conf") != NULL);
	CHECK(slurm_is_unreachable(err.msg));
	unsetenv("SLURM_CONF");

	/* scancel's line per job id: one line and a count, not a cut dump. */
	CHECK_INT(slurm_cancel(ids, 3, &err), -1);
	CHECK(strstr(err.msg, "job id 5: Unable to contact slurm controller (connect failure) (and 2 more "
			      "lines) (exit 8)") != NULL);
	CHECK(slurm_is_unreachable(err.msg));
	CHECK(!slurm_is_unreachable("scancel: error: Kill job error on job id 5: Access/permission denied"));

	slurm_jobs_release(&jobs);
	unsetenv("CAIRN_SLURM_BIN");
	if (conf)
		setenv("SLURM_CONF", conf, 1);
	mem_free(conf);
	struct error rerr;
	fs_rm_rf(dir, &rerr);
}

/* ---- live: the real commands against the cluster in SLURM_CONF -------- */

static char live_dir[256];

static int write_script(const char *name, const char *body, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", live_dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(body, f);
	return fclose(f);
}

/* Polls (one squeue call each) until every element has ended. */
static int live_wait(const long *ids, size_t n, struct slurm_jobs *jobs, double limit)
{
	struct error err;
	double t0 = clock_now();
	while (clock_now() - t0 < limit) {
		slurm_jobs_release(jobs);
		if (slurm_squeue(ids, n, jobs, &err) < 0) {
			printf("#   %s\n", err.msg);
			return -1;
		}
		int active = 0;
		for (size_t i = 0; i < jobs->n; i++)
			active += strcmp(jobs->v[i].state, "PENDING") == 0 || strcmp(jobs->v[i].state, "RUNNING") == 0 ||
				  strcmp(jobs->v[i].state, "COMPLETING") == 0 ||
				  strcmp(jobs->v[i].state, "CONFIGURING") == 0;
		if (!active)
			return 0;
		usleep(300000);
	}
	return -1;
}

static void test_live(void)
{
	struct error err;
	struct slurm_config cfg = {0};
	slurm_calls_reset();
	CHECK_INT(slurm_read_config(&cfg, &err), 0);
	CHECK(cfg.max_array_size > 0);
	CHECK(cfg.min_job_age >= 0);
	long mas = 0;
	CHECK_INT(slurm_max_array_size(&mas, &err), 0);
	CHECK_INT(mas, cfg.max_array_size);
	CHECK_INT(slurm_calls(SLURM_SCONTROL), 2);
	printf("#   MaxArraySize=%ld MinJobAge=%ld MpiDefault=%s version %s\n", cfg.max_array_size, cfg.min_job_age,
	       cfg.mpi_default, cfg.version);

	snprintf(live_dir, sizeof(live_dir), "/tmp/cairn-live.XXXXXX");
	CHECK(mkdtemp(live_dir) != NULL);
	char arr[512], slow[512], outpat[600];
	CHECK_INT(write_script("arr.sh", "#!/bin/sh\n[ \"$SLURM_ARRAY_TASK_ID\" != 1 ] || exit 3\n", arr, sizeof(arr)),
		  0);
	CHECK_INT(write_script("slow.sh", "#!/bin/sh\nsleep 60\n", slow, sizeof(slow)), 0);
	snprintf(outpat, sizeof(outpat), "--output=%s/%%A_%%a.out", live_dir);

	long a = 0, s = 0;
	const char *extra[] = {"--array=0-2", "--job-name=cairn-live", outpat, NULL};
	CHECK_INT(slurm_sbatch(arr, extra, &a, &err), 0);
	const char *extra_slow[] = {"--job-name=cairn-slow", "--output=/dev/null", NULL};
	CHECK_INT(slurm_sbatch(slow, extra_slow, &s, &err), 0);
	CHECK_INT(slurm_calls(SLURM_SBATCH), 2);
	CHECK(a > 0 && s > a);

	/* One squeue call for both jobs and an id Slurm never knew. */
	long ids[] = {a, s, 99999999};
	struct slurm_jobs jobs;
	slurm_jobs_init(&jobs);
	slurm_calls_reset();
	CHECK_INT(slurm_squeue(ids, 3, &jobs, &err), 0);
	CHECK_INT(slurm_calls(SLURM_SQUEUE), 1);
	CHECK_INT(jobs.n, 4); /* 3 elements + 1 plain job */

	CHECK_INT(live_wait(ids, 1, &jobs, 30), 0);
	CHECK_INT(jobs.n, 3);
	int seen = 0;
	for (size_t i = 0; i < jobs.n; i++) {
		struct slurm_job *j = &jobs.v[i];
		CHECK_INT(j->array_job_id, a);
		seen |= 1 << j->array_task;
		if (j->array_task == 1) {
			CHECK_STR(j->state, "FAILED");
			CHECK_INT(j->exit_code, 3);
			CHECK_INT(slurm_failure_kind(j->state, j->reason, j->exit_code, j->signal), SLURM_FAIL_EXIT);
		} else {
			CHECK_STR(j->state, "COMPLETED");
			CHECK_INT(slurm_failure_kind(j->state, j->reason, j->exit_code, j->signal), -1);
		}
	}
	CHECK_INT(seen, 7);

	char elem[64];
	snprintf(elem, sizeof(elem), "%ld_1", a);
	struct slurm_job_info info = {0};
	CHECK_INT(slurm_show_job(elem, &info, &err), 0);
	CHECK_INT(info.array_job_id, a);
	CHECK_INT(info.array_task, 1);
	CHECK_STR(info.state, "FAILED");
	CHECK_INT(info.exit_code, 3);
	CHECK_STR(info.name, "cairn-live");
	CHECK_INT(slurm_show_job("99999999", &info, &err), 1);

	/* Ids Slurm does not know: squeue exits 1, the result is just empty. */
	long unknown[] = {99999998, 99999999};
	slurm_jobs_release(&jobs);
	CHECK_INT(slurm_squeue(unknown, 2, &jobs, &err), 0);
	CHECK_INT(jobs.n, 0);

	/* One scancel for a running job, a finished one and an unknown one. */
	long cancel[] = {s, a, 99999999};
	slurm_calls_reset();
	CHECK_INT(slurm_cancel(cancel, 3, &err), 0);
	CHECK_INT(slurm_calls(SLURM_SCANCEL), 1);
	CHECK_INT(live_wait(&s, 1, &jobs, 20), 0);
	CHECK_INT(jobs.n, 1);
	if (jobs.n == 1) {
		CHECK_STR(jobs.v[0].state, "CANCELLED");
		CHECK_INT(slurm_failure_kind(jobs.v[0].state, jobs.v[0].reason, jobs.v[0].exit_code, jobs.v[0].signal),
			  SLURM_FAIL_CANCELLED);
	}

	/* A definite error from the real sbatch: one call, its message. */
	long bad = 0;
	const char *extra_bad[] = {"--partition=nope", NULL};
	slurm_calls_reset();
	CHECK_INT(slurm_sbatch(slow, extra_bad, &bad, &err), -1);
	CHECK_INT(slurm_calls(SLURM_SBATCH), 1);
	CHECK(strstr(err.msg, "nvalid partition") != NULL);
	printf("#   sbatch --partition=nope: %s\n", err.msg);

	/* By name: the array under its --job-name, one call; a bad name is refused. */
	const char *names[] = {"cairn-live", "cairn-no-such-job", NULL};
	slurm_calls_reset();
	slurm_jobs_release(&jobs);
	CHECK_INT(slurm_squeue_names(names, 2, &jobs, &err), 0);
	CHECK_INT(slurm_calls(SLURM_SQUEUE), 1);
	CHECK_INT(jobs.n, 3);
	for (size_t i = 0; i < jobs.n; i++)
		CHECK_INT(jobs.v[i].array_job_id, a);
	const char *bad_names[] = {"a,b", NULL};
	CHECK_INT(slurm_squeue_names(bad_names, 1, &jobs, &err), -1);

	/* Requeue: a finished job goes back to PENDING with one more restart. */
	long done_id = 0;
	char done_str[32];
	const char *extra_q[] = {"--output=/dev/null", "--job-name=cairn-requeue", NULL};
	char quick[512];
	CHECK_INT(write_script("quick.sh", "#!/bin/sh\ntrue\n", quick, sizeof(quick)), 0);
	CHECK_INT(slurm_sbatch(quick, extra_q, &done_id, &err), 0);
	CHECK_INT(live_wait(&done_id, 1, &jobs, 30), 0);
	snprintf(done_str, sizeof(done_str), "%ld", done_id);
	CHECK_INT(slurm_requeue(done_str, &err), 0);
	CHECK_INT(slurm_show_job(done_str, &info, &err), 0);
	CHECK_INT(info.restarts, 1);
	CHECK_INT(slurm_requeue("99999999", &err), -1);
	printf("#   scontrol requeue 99999999: %s\n", err.msg);
	CHECK_INT(slurm_cancel(&done_id, 1, &err), 0);

	/* Many ids in one call: 2,000 made-up ids around the real ones. */
	long many[2000];
	for (int i = 0; i < 2000; i++)
		many[i] = 90000000 + i;
	many[0] = a;
	slurm_calls_reset();
	slurm_jobs_release(&jobs);
	CHECK_INT(slurm_squeue(many, 2000, &jobs, &err), 0);
	CHECK_INT(slurm_calls(SLURM_SQUEUE), 1);
	CHECK_INT(jobs.n, 3);

	/* 15,000 ids (~135 KB of text) exceed one argument: two calls, same answer. */
	static long lots[15000];
	for (int i = 0; i < 15000; i++)
		lots[i] = 90000000 + i;
	lots[14999] = a;
	slurm_calls_reset();
	slurm_jobs_release(&jobs);
	CHECK_INT(slurm_squeue(lots, 15000, &jobs, &err), 0);
	CHECK_INT(slurm_calls(SLURM_SQUEUE), 2);
	CHECK_INT(jobs.n, 3);

	slurm_jobs_release(&jobs);
	struct error rerr;
	fs_rm_rf(live_dir, &rerr);
}

int main(int argc, char **argv)
{
	RUN(test_parse_sbatch);
	RUN(test_transient);
	RUN(test_parse_squeue);
	RUN(test_parse_show_job);
	RUN(test_parse_config);
	RUN(test_failure_kinds);
	RUN(test_stop_kind);
	RUN(test_sbatch_retry);
	RUN(test_unreachable);
	if (argc > 1 && strcmp(argv[1], "--live") == 0)
		RUN(test_live);
	else
		SKIP("test_live", "needs a cluster: run by tests/integration/slurm_cluster.sh");
	return CHECK_DONE();
}
