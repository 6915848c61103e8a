#!/usr/bin/env python3
"""Issue #8's goals, read off what bench/cuda.sh printed (40-bench.log of
scripts/gpu-check.sh, and 41-layout.log after it for the rows of
CAIRN_CUDA_CONV_NHWC=1): cairn's figure beside PyTorch's from the same run,
their ratio and the goal, one line each, then the lines the goals do not
judge (without CUDA graphs, bf16 with fp32 activations, device memory,
gemm, ResNet-50 channels_last). Usage: cuda_goals.py LOG [LOG...] (read as one). Exit status 0
when every goal found is met, 1 when one is missed, 2 when the log holds
none of them (a run that failed early)."""
import re
import sys

# cairn DEVICE tf32 cnn:... batch 128 1x28x28: 1.234 ms/step, 103727 images/s (loss ...)
# torch DEVICE tf32[ channels_last] cnn:... batch 128 1x28x28: 1.234 ms/step, 103727 images/s (loss ...)
# (DEVICE: cuda on the GPU; cpu where tests/integration/cuda_goals.sh runs both programs)
STEP = re.compile(r"^(cairn|torch) \w+ (fp32|tf32|bf16)( channels_last)? (\S+) batch (\d+) "
                  r"(\d+x\d+x\d+): ([\d.]+) ms/step, ([\d.]+) images/s")
CYCLE = re.compile(r"^(cairn|torch) \w+ (tf32|fp32|bf16) cyclegan-step .* batch (\d+) "
                   r"(\d+x\d+x\d+): ([\d.]+) ms/step")
CONV = re.compile(r"^conv (fp32|tf32|bf16) (.*): cairn .* cairn/bare time ([\d.]+)$")
GEMM = re.compile(r"^gemm (fp32|tf32|bf16) (\d+)\^3: cairn [\d.]+ ms ([\d.]+) TFLOP/s, "
                  r"bare cuBLAS [\d.]+ ms ([\d.]+) TFLOP/s")
TORCH_GEMM = re.compile(r"^torch gemm (fp32|tf32|bf16) (\d+)\^3: [\d.]+ ms ([\d.]+) TFLOP/s")
MEMORY = re.compile(r"^# device memory: (.*)$")

# the networks by input shape and batch (bench/cuda.sh)
NETS = {("1x28x28", 128): "small CNN", ("3x256x256", 8): "U-Net", ("3x224x224", 128): "ResNet-50"}


def read(lines):
    """The figures, keyed: ('step', who, variant, net, precision) -> (ms, images/s);
    ('cycle', who, batch) -> ms; ('conv', precision, layer) -> ratio; notes."""
    f, notes, variant, last_step = {}, [], "", None
    for raw in lines:
        line = raw.strip()
        if line.startswith("next line: cairn without CUDA graphs"):
            variant = "no graphs"
            continue
        if line.startswith("next line: cairn bf16 with fp32 activations"):
            variant = "fp32 activations"
            continue
        if line.startswith("next line: cairn fp32 with FFT and Winograd"):
            variant = "FFT and Winograd"
            continue
        if line.startswith("next line: cairn with CAIRN_CUDA_CONV_NHWC=1"):
            variant = "NHWC convolutions"
            continue
        m = STEP.match(line)
        if m:
            who, prec, cl, _, batch, shape, ms, ips = m.groups()
            net = NETS.get((shape, int(batch)), f"{shape} batch {batch}")
            v = "channels_last" if cl else (variant if who == "cairn" else "")
            f.setdefault(("step", who, v, net, prec), (float(ms), float(ips)))
            last_step = (who, v, net, prec)
            variant = ""
            continue
        m = CYCLE.match(line)
        if m:
            who, prec, batch, _, ms = m.groups()
            v = variant if who == "cairn" else ""
            f.setdefault(("cycle", who, prec, int(batch)) + ((v,) if v else ()), float(ms))
            variant = ""
            continue
        m = CONV.match(line)
        if m:
            f[("conv", m.group(1), m.group(2))] = float(m.group(3))
            continue
        m = GEMM.match(line)
        if m:
            prec, size, tc, tb = m.groups()
            notes.append(f"sgemm {size}^3 {prec}: cairn {tc} TFLOP/s, bare cuBLAS {tb}")
            continue
        m = TORCH_GEMM.match(line)
        if m:
            notes.append(f"sgemm {m.group(2)}^3 {m.group(1)}: PyTorch {m.group(3)} TFLOP/s")
            continue
        m = MEMORY.match(line)
        if m and last_step and last_step[0] == "cairn":
            _, v, net, prec = last_step
            notes.append(f"{net} {prec}{' ' + v if v else ''}: {m.group(1)}")
    return f, notes


def goals(f):
    """(what, cairn, torch, ratio, goal text, met) for each goal whose figures are there."""
    out = []

    def step(who, net, prec, v=""):
        return f.get(("step", who, v, net, prec))

    for prec in ("tf32", "fp32", "bf16"):  # small CNN: >= 3x PyTorch's images/s (launch-bound)
        c, t = step("cairn", "small CNN", prec), step("torch", "small CNN", prec)
        if c and t:
            r = c[1] / t[1]
            out.append((f"small CNN {prec} images/s", f"{c[1]:.0f}", f"{t[1]:.0f}", r, ">= 3.0", r >= 3.0))
    for prec in ("fp32", "tf32", "bf16"):  # U-Net: <= 0.8x PyTorch's time
        c, t = step("cairn", "U-Net", prec), step("torch", "U-Net", prec)
        if c and t:
            r = c[0] / t[0]
            out.append((f"U-Net {prec} ms/step", f"{c[0]:.2f}", f"{t[0]:.2f}", r, "<= 0.80", r <= 0.8))
    c, t = step("cairn", "U-Net", "fp32", "FFT and Winograd"), step("torch", "U-Net", "fp32")
    if c and t:  # the same goal with PyTorch's fp32 algorithm set
        r = c[0] / t[0]
        out.append(("U-Net fp32 with FFT and Winograd (as PyTorch) ms/step", f"{c[0]:.2f}", f"{t[0]:.2f}",
                    r, "<= 0.80", r <= 0.8))
    for prec in ("tf32", "fp32", "bf16"):  # CycleGAN: <= 0.7x
        for b in (1, 8):
            c, t = f.get(("cycle", "cairn", prec, b)), f.get(("cycle", "torch", prec, b))
            if c and t:
                r = c / t
                out.append((f"CycleGAN {prec} batch {b} ms/step", f"{c:.2f}", f"{t:.2f}", r, "<= 0.70",
                            r <= 0.7))
    # the experiment of CAIRN_CUDA_CONV_NHWC=1 (bench/cuda.sh --cuda layout), judged by the same goals
    c, t = f.get(("cycle", "cairn", "tf32", 8, "NHWC convolutions")), f.get(("cycle", "torch", "tf32", 8))
    if c and t:
        r = c / t
        out.append(("CycleGAN tf32 batch 8, CAIRN_CUDA_CONV_NHWC=1, ms/step", f"{c:.2f}", f"{t:.2f}", r,
                    "<= 0.70", r <= 0.7))
    c, t = step("cairn", "U-Net", "tf32", "NHWC convolutions"), step("torch", "U-Net", "tf32")
    if c and t:
        r = c[0] / t[0]
        out.append(("U-Net tf32, CAIRN_CUDA_CONV_NHWC=1, ms/step", f"{c[0]:.2f}", f"{t[0]:.2f}", r,
                    "<= 0.80", r <= 0.8))
    c, t = step("cairn", "ResNet-50", "bf16"), step("torch", "ResNet-50", "bf16")
    if c and t:  # ResNet-50 bf16: >= 1.0x PyTorch eager's images/s (NCHW)
        r = c[1] / t[1]
        out.append(("ResNet-50 bf16 images/s", f"{c[1]:.0f}", f"{t[1]:.0f}", r, ">= 1.00", r >= 1.0))
    for key in sorted(k for k in f if k[0] == "conv"):  # cairn's conv layers lose < 5% to bare cuDNN
        r = f[key]
        out.append((f"conv {key[1]} {key[2]} cairn/bare time", "", "", r, "<= 1.05", r <= 1.05))
    return out


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    lines = []
    for path in argv[1:]:
        with open(path, errors="replace") as fh:
            lines += fh.readlines()
    f, notes = read(lines)
    rows = goals(f)
    if not rows:
        print(f"{argv[1]}: no goal's figures found (did bench/cuda.sh run?)")
        return 2
    print(f"{'goal':58} {'cairn':>10} {'PyTorch':>10} {'ratio':>7} {'goal':>8}")
    for what, c, t, r, g, met in rows:
        print(f"{what:58} {c:>10} {t:>10} {r:7.3f} {g:>8}  {'met' if met else 'MISSED'}")
    missed = sum(not row[5] for row in rows)
    print(f"{len(rows) - missed} of {len(rows)} goals met")
    extra = [("small CNN tf32, without CUDA graphs", step_line(f, "small CNN", "tf32", "no graphs")),
             ("U-Net bf16, fp32 activations", step_line(f, "U-Net", "bf16", "fp32 activations")),
             ("ResNet-50 bf16, PyTorch channels_last",
              step_line(f, "ResNet-50", "bf16", "channels_last", who="torch"))]
    for what, s in extra:
        if s:
            print(f"also: {what}: {s}")
    for n in notes:
        print(f"also: {n}")
    return 1 if missed else 0


def step_line(f, net, prec, v, who="cairn"):
    x = f.get(("step", who, v, net, prec))
    return f"{x[0]:.3f} ms/step, {x[1]:.0f} images/s" if x else None


if __name__ == "__main__":
    sys.exit(main(sys.argv))
