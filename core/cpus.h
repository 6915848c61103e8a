/* cpus: how many CPUs this process may use, for default thread counts. */
#ifndef CORE_CPUS_H
#define CORE_CPUS_H

/* The CPUs in this process's affinity mask (taskset, a Slurm task's CPUs,
 * an MPI rank bound to its cores), else the online CPUs; at least 1. A
 * stage given 4 CPUs of a 64-core node runs 4 threads, not 64. */
int cpus_usable(void);

/* A stage's default thread count: OMP_NUM_THREADS when it is a number from
 * 1 to 1024 (cairn's task wrapper sets it to the stage's `cpus`, so a task
 * uses what it asked for on either executor, as OpenMP programs do), else
 * cpus_usable(). */
int cpus_default_threads(void);

#endif
