#!/usr/bin/env python3
"""transform.py OPS_CU OUT_CPP: nn/cuda/ops.cu as host C++ for the host
simulation (tests/integration/cuda_hostsim.sh): each block runs with one
thread, so a block reduction is the identity and every kernel's loops visit
all of their elements in order; launches become loops over the grid.
transform.py --reduce OPS_CU OUT_CPP: only the block reduction (block_sum)
and sum_partials, unchanged, for reduce.cpp's threaded simulation.
transform.py --sim OPS_CU OUT_CPP: for the simulated runtime (rt/, sim_rt.cpp):
rt.h stays, block_sum is the identity as above, and a launch is queued on its
stream with its block size checked: SIM_LAUNCH(kernel, grid, block, stream)."""
import re, sys

if sys.argv[1] == '--reduce':
    src = open(sys.argv[2]).read()
    a = src.index('/* Sum of v over the block')
    b = src.index('/* ---- element-wise')
    open(sys.argv[3], 'w').write(src[a:b])
    sys.exit(0)

sim = sys.argv[1] == '--sim'
if sim:
    del sys.argv[1]
src = open(sys.argv[1]).read()
if not sim:
    src = src.replace('#include "nn/cuda/rt.h"', '#include "fake_rt.h"')
a = src.index('__device__ static double block_sum(double v)')
b = src.index('/* Blocks of a reduction')
src = src[:a] + 'static double block_sum(double v) { return v; }\n\n' + src[b:]
launch = r'SIM_LAUNCH(\1, \2, \3, cu.compute)(' if sim else r'LAUNCH(\1, \2)('
src, n = re.subn(r'(\w+)<<<([^<>]*?), ([A-Z_0-9]+), 0, cu\.compute>>>\(', launch, src)
if '<<<' in src or n == 0:
    sys.exit('transform.py: a kernel launch of an unexpected form is left in ' + sys.argv[1])
open(sys.argv[2], 'w').write(src)
