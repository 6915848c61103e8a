#!/usr/bin/env bash
# A private single-node Slurm cluster (slurmctld + slurmd + munged from
# Debian's slurm-wlm 22.05 and munge) living entirely in one folder, so tests
# and people can use Slurm without touching the machine's own configuration.
#
#   tests/slurm/cluster.sh start DIR   create DIR, start munged, slurmctld, slurmd;
#                                      wait until `sinfo` shows the node idle
#   tests/slurm/cluster.sh env DIR     print `export SLURM_CONF=...` for eval
#   tests/slurm/cluster.sh stop DIR    stop every daemon that start started
#   tests/slurm/cluster.sh status DIR  sinfo + daemon pids
#
# Example (by hand):
#   tests/slurm/cluster.sh start /tmp/sl && eval "$(tests/slurm/cluster.sh env /tmp/sl)"
#   sbatch --wrap 'hostname' && squeue
#   tests/slurm/cluster.sh stop /tmp/sl
#
# Knobs (environment, read by start):
#   CLUSTER_CPUS       CPUs the node claims (default 8; the real count may be
#                      lower: SlurmdParameters=config_overrides lets it oversubscribe)
#   CLUSTER_MAX_ARRAY  MaxArraySize (default 1001, Slurm's own default)
#   CLUSTER_MIN_JOB_AGE MinJobAge in seconds (default 300, Slurm's own default)
#   CLUSTER_PORT       slurmctld port (slurmd gets the next one); default: a free
#                      pair picked at random in 20000-49999
#   CLUSTER_CRED_EXPIRE AuthInfo cred_expire in seconds (default 10; Slurm's 120
#                      also delays a requeued job's restart by 121 s)
# Needs root (slurmd must run as root). Exit 0 ok, 1 a daemon failed (its log
# tail is printed), 2 bad usage.
set -u

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
cmd=$1
[ "$cmd" = -h ] || [ "$cmd" = --help ] && usage
[ $# -eq 2 ] || usage
dir=$2

SBIN=${CLUSTER_SBIN:-/usr/sbin}

pid_alive() { # pidfile [name]: the pid in it runs (and is called name)
	local p
	[ -s "$1" ] || return 1
	p=$(cat "$1" 2>/dev/null) || return 1
	[ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
	[ -z "${2:-}" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]
}

# stop_pidfile FILE NAME: TERM, wait up to 5 s, then KILL; only when the pid
# still belongs to a process called NAME (a stale pid file may name a pid
# that has been reused since).
stop_pidfile() {
	local f=$1 name=$2 p i
	[ -s "$f" ] || return 0
	p=$(cat "$f" 2>/dev/null)
	if [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$name" ]; then
		kill -TERM "$p" 2>/dev/null
		for i in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
	fi
	rm -f "$f"
}

port_free() { # port: free when nothing listens on it (IPv4 or IPv6); reads
	# /proc/net/tcp* directly (state 0A = LISTEN), so no iproute2 is needed.
	local hex
	hex=$(printf ':%04X' "$1")
	! awk -v h="$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == h { found = 1 }
		END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Two consecutive free ports (slurmctld, slurmd), starting at a random place
# so that several clusters on one machine rarely collide.
pick_ports() {
	local tries=0 p
	while [ $tries -lt 200 ]; do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
		if port_free "$p" && port_free $((p + 1)); then
			echo "$p"
			return 0
		fi
		tries=$((tries + 1))
	done
	return 1
}

log_tail() { # file name
	echo "---- last lines of $2 log ($1) ----" >&2
	tail -n 25 "$1" 2>/dev/null >&2 || echo "(no log)" >&2
}

print_env() {
	echo "export SLURM_CONF=$dir/slurm.conf"
}

# our_procs: pids of job processes and slurmstepds of this cluster, found by
# SLURM_CONF=<our conf> in their environment (jobs inherit it from sbatch).
our_procs() {
	local f p
	# One grep over every environment (NUL-separated) instead of a process per pid.
	for f in $(grep -lzx -F "SLURM_CONF=$dir/slurm.conf" /proc/[0-9]*/environ 2>/dev/null); do
		p=${f#/proc/}
		p=${p%/environ}
		[ "$p" = $$ ] && continue
		if grep -qz '^SLURM_JOB_ID=' "$f" 2>/dev/null || [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmstepd ]; then
			echo "$p"
		fi
	done
}

stop_all() {
	# Cancel what still runs so that job processes end with their steps.
	if pid_alive "$dir/run/slurmctld.pid"; then
		local ids
		ids=$(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
		[ -n "${ids// /}" ] && SLURM_CONF=$dir/slurm.conf timeout 5 scancel $ids 2>/dev/null
	fi
	stop_pidfile "$dir/run/slurmd.pid" slurmd
	stop_pidfile "$dir/run/slurmctld.pid" slurmctld
	stop_pidfile "$dir/munge/munged.pid" munged
	local p
	for p in $(our_procs); do kill -KILL "$p" 2>/dev/null; done
	return 0
}

write_conf() {
	local port=$1 cpus=$2 mem=$3 mpi=$4 host
	host=$(hostname -s)
	cat >"$dir/slurm.conf" <<EOF
# Private single-node cluster written by tests/slurm/cluster.sh; everything in $dir.
ClusterName=cairn
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munged.sock,cred_expire=${CLUSTER_CRED_EXPIRE:-10}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=100
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# No cgroups here (task/none): memory is enforced by polling RSS every second.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
MpiDefault=$mpi
ReturnToService=2
MaxArraySize=${CLUSTER_MAX_ARRAY:-1001}
MaxJobCount=200000
MinJobAge=${CLUSTER_MIN_JOB_AGE:-300}
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
Waittime=0
SchedulerType=sched/backfill
# Scheduling passes every 2 s (default 60 s, backfill 30 s) so a requeued or
# newly eligible job starts within seconds.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
# Jobs in "high" preempt jobs in "debug" (PriorityTier), which are requeued
# when they can be and cancelled (state PREEMPTED) when not: lets tests see
# preemption on one node.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1
PartitionName=high Nodes=$host MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=2
EOF
}

start() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd needs it)"
	for b in "$SBIN/slurmctld" "$SBIN/slurmd" "$SBIN/munged" /usr/bin/sinfo; do
		[ -x "$b" ] || die "$b not found: install slurm-wlm and munge (scripts/deps.sh)"
	done
	mkdir -p "$dir" || die "cannot create $dir"
	dir=$(cd "$dir" && pwd)
	if pid_alive "$dir/run/slurmctld.pid" slurmctld || pid_alive "$dir/run/slurmd.pid" slurmd; then
		die "a cluster already runs in $dir (stop it first: $0 stop $dir)"
	fi
	[ -f "$dir/slurm.conf" ] && stop_all # stale pid files, daemons or jobs of an earlier cluster here
	mkdir -p "$dir/state" "$dir/spool" "$dir/run" "$dir/log" "$dir/munge" || die "cannot create folders in $dir"
	chmod 700 "$dir/munge"
	rm -f "$dir"/log/*.log

	# munged with its own key and socket, so a system munge is never touched.
	if [ ! -s "$dir/munge/munge.key" ]; then
		dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none ||
			die "cannot write $dir/munge/munge.key"
	fi
	chmod 400 "$dir/munge/munge.key"
	"$SBIN/munged" --socket="$dir/munge/munged.sock" --key-file="$dir/munge/munge.key" \
		--pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
		--seed-file="$dir/munge/munged.seed" --force 2>"$dir/munge/munged.err"
	local i
	for i in $(seq 50); do
		[ -S "$dir/munge/munged.sock" ] && pid_alive "$dir/munge/munged.pid" && break
		sleep 0.1
	done
	if ! [ -S "$dir/munge/munged.sock" ]; then
		cat "$dir/munge/munged.err" >&2
		log_tail "$dir/munge/munged.log" munged
		die "munged did not start"
	fi

	local cpus=${CLUSTER_CPUS:-8} mem mpi=none port attempt
	mem=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
	for attempt in 1 2 3; do
		if [ -n "${CLUSTER_PORT:-}" ]; then
			port=$CLUSTER_PORT
			port_free "$port" && port_free $((port + 1)) ||
				{ stop_all; die "CLUSTER_PORT=$port: port $port or $((port + 1)) is in use"; }
		else
			port=$(pick_ports) || { stop_all; die "no free port pair found"; }
		fi
		# srun --mpi=list needs a configuration; the plugin files tell the same.
		if [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] ||
			ls /usr/lib/*/slurm*/mpi_pmix.so >/dev/null 2>&1; then
			mpi=pmix
		fi
		write_conf "$port" "$cpus" "$mem" "$mpi"
		export SLURM_CONF=$dir/slurm.conf
		# -i: ignore state files we cannot read (a crash left them half-written).
		"$SBIN/slurmctld" -i 2>>"$dir/log/slurmctld.err"
		local rc=$?
		for i in $(seq 50); do
			pid_alive "$dir/run/slurmctld.pid" && scontrol ping >/dev/null 2>&1 && break
			sleep 0.1
		done
		if pid_alive "$dir/run/slurmctld.pid" && scontrol ping 2>/dev/null | grep -q UP; then
			break
		fi
		if grep -qiE 'address already in use|bind' "$dir/log/slurmctld.log" 2>/dev/null; then
			echo "cluster.sh: port $port taken meanwhile, trying another" >&2
			stop_pidfile "$dir/run/slurmctld.pid" slurmctld
			continue
		fi
		cat "$dir/log/slurmctld.err" >&2 2>/dev/null
		log_tail "$dir/log/slurmctld.log" slurmctld
		stop_all
		die "slurmctld did not start (exit $rc)"
	done
	pid_alive "$dir/run/slurmctld.pid" || { stop_all; die "slurmctld did not start"; }

	"$SBIN/slurmd" 2>>"$dir/log/slurmd.err"
	local state=
	for i in $(seq 150); do
		state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1)
		[ "$state" = idle ] && break
		pid_alive "$dir/run/slurmd.pid" || [ $i -lt 20 ] || break
		sleep 0.1
	done
	if [ "$state" != idle ]; then
		cat "$dir/log/slurmd.err" >&2 2>/dev/null
		log_tail "$dir/log/slurmd.log" slurmd
		log_tail "$dir/log/slurmctld.log" slurmctld
		stop_all
		die "node did not become idle (state '${state:-none}')"
	fi
	print_env >"$dir/env"
	echo "cluster.sh: cluster up in $dir (slurmctld port $port, node $(hostname -s), $cpus CPUs, MpiDefault=$mpi)" >&2
}

case $cmd in
start) start ;;
stop)
	[ -d "$dir" ] || exit 0
	dir=$(cd "$dir" && pwd)
	stop_all
	;;
env)
	[ -f "$dir/slurm.conf" ] || die "no cluster in $dir (run: $0 start $dir)"
	dir=$(cd "$dir" && pwd)
	print_env
	;;
status)
	dir=$(cd "$dir" && pwd) || exit 1
	export SLURM_CONF=$dir/slurm.conf
	for d in munge/munged run/slurmctld run/slurmd; do
		if pid_alive "$dir/$d.pid"; then echo "$(basename $d): pid $(cat "$dir/$d.pid")"; else echo "$(basename $d): not running"; fi
	done
	sinfo
	;;
*) usage ;;
esac
