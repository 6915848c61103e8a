/* cpus: how many CPUs this process may use, for default thread counts. */
#ifndef CORE_CPUS_H
#define CORE_CPUS_H

/* The CPUs in this process's affinity mask (taskset, a Slurm task's CPUs,
 * an MPI rank bound to its cores), else the online CPUs; at least 1. A
 * stage given 4 CPUs of a 64-core node runs 4 threads, not 64. */
int cpus_usable(void);

#endif
