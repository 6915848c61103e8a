/* par: a small persistent thread pool for the fast CPU backend. par_for
 * splits [0, n) into contiguous chunks, one per thread (the caller runs the
 * first), and returns when all are done. Chunks depend only on n and the
 * thread count, so results are the same run to run. OpenBLAS is kept
 * single-threaded and called inside the chunks: its own idle threads would
 * otherwise spin on sched_yield and slow down everything that is not sgemm.
 * Internal to nn/cpu. */
#ifndef NN_CPU_PAR_H
#define NN_CPU_PAR_H

typedef void (*par_fn)(void *ctx, int begin, int end, int tid);

/* Threads used by par_for (fixed at the first call; nn_cpu_set_threads before that). */
int par_threads(void);
void par_set_threads(int n);
/* Run fn over [0, n) in min(n, threads) chunks; chunk t runs with tid = t. */
void par_for(int n, par_fn fn, void *ctx);
/* Chunk t of [0, n) split in `parts`: [*b, *e). */
void par_chunk(int n, int parts, int t, int *b, int *e);

#endif
