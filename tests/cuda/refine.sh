#!/usr/bin/env bash
# cairn-refine train and apply --device cuda against --device cpu, same seed,
# on synthetic 256x256 mask shards (test_segment --write-shards): the first
# steps' losses agree in fp32 (the CycleGAN's four modules, their shared
# uses, the crops uploaded before each graph replay), the refined masks agree
# but for rounding; then the default refinement (tf32) for 500 steps, its
# rate beside the CPU's. Run on an H200 in session 16 (docs/cuda.md).
source "$(dirname "$0")/../lib.sh"
need_gpu refine_cuda
"$CAIRN_TESTS/test_segment" --write-shards $T 16 256 || {
	not_ok "test_segment --write-shards"
	exit 1
}
run() { cairn-refine train --train $T/train.ds --out $T/$1 --crop 64 --paired 3 "${@:2}"; }
check_rc "cuda fp32: 20 steps" 0 run gpu --steps 20 --device cuda --precision fp32
check_rc "cpu: 20 steps" 0 run cpu --steps 20 --device cpu
check "cuda's losses within 2% of cpu's" python3 -c "
import json; a, b = (json.load(open('$T/%s/metrics.json' % d))['history'][-1] for d in ('gpu', 'cpu'))
print('# cuda %s\n# cpu  %s' % (a, b))
assert all(abs(a[k] - b[k]) <= 0.02 * abs(b[k]) + 1e-4 for k in a if k not in ('step', 'wall_time_s'))"
check_rc "apply on cuda" 0 cairn-refine apply --model $T/cpu/map.ckpt --in $T/train.ds --out $T/rg.ds --json $T/rg.json --device cuda --precision fp32
check_rc "apply on cpu" 0 cairn-refine apply --model $T/cpu/map.ckpt --in $T/train.ds --out $T/rc.ds --json $T/rc.json --device cpu
check "the refined masks agree (changed counts within 0.1% of the pixels)" python3 -c "
import json; a, b = (json.load(open('$T/%s.json' % d)) for d in ('rg', 'rc'))
diff = sum(abs(x - y) for ra, rb in zip(a['changed'], b['changed']) for x, y in zip(ra, rb))
print('# changed: cuda %s, cpu %s' % (a['changed'], b['changed'])); assert diff <= 0.001 * a['pixels']"
check_rc "cuda tf32: 500 steps (the default nets)" 0 run rate --steps 500 --device cuda
check_rc "cpu: 100 steps" 0 run ratecpu --steps 100 --device cpu
python3 -c "
import json; g, c = (json.load(open('$T/%s/metrics.json' % d)) for d in ('rate', 'ratecpu'))
print('# cairn-refine train: cuda tf32 %.1f steps/s, cpu %.1f steps/s' % (g['steps_per_second'], c['steps_per_second']))"
exit $failed
