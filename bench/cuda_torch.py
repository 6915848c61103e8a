#!/usr/bin/env python3
# bench/cuda_torch.py: the PyTorch side of bench/cuda.sh: the same networks
# as cairn's nn/model.c specs, one training step (forward, cross-entropy over
# the output channels, backward, SGD) timed after warm-up, printed in
# bench/cuda_step's format; the CycleGAN step of Zhu et al.'s reference code;
# the U-Net's 3x3 convolutions (forward + backward) and a square matmul.
# Usage:
#   cuda_torch.py --arch SPEC --batch N --size S --channels C --classes K --precision fp32|tf32|bf16
#                 [--channels-last]
#                 SPEC: a cairn model spec of a mirrored family (cnn, unet, resnet with
#                 bottleneck=4, cyclegan, patchgan), options as in nn/model.c
#   cuda_torch.py --task cyclegan|conv|gemm --precision P [--batch 8] [--size 8192]
#                 [--shapes unet|cyclegan] (conv) [--channels-last] (cyclegan, conv)
#   cuda_torch.py --run "ARGS" --run "ARGS" ...   several of the above in one process
#                 (bench/cuda.sh: one import of torch instead of one per figure)
#   cuda_torch.py --check DIR [--tol T]   the mirror of the net bench/cuda_step --task dump
#                 wrote to DIR, given its weights and input: do its output, weight and
#                 input gradients match cairn's? (tests/integration/torch_mirror.sh)
# --device cpu runs any of them on the CPU (the checks; the timings then mean little).
# The networks are bench/torch_nets.py's, the checks bench/torch_check.py's.
import argparse, os, shlex, sys, time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_check import check, check_cyclegan  # noqa: E402
from torch_nets import build_net, cyclegan_step_fn  # noqa: E402


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(step, a):
    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        out = step()
    sync()
    return (time.perf_counter() - t0) / a.steps, out


# (cin, cout, size, k, stride, pad, count): bench/cuda_step.c unet_convs and cyclegan_convs
CONV_SHAPES = {
    "unet": [(3, 16, 256), (16, 16, 256), (16, 32, 128), (32, 32, 128), (32, 64, 64), (64, 64, 64),
             (64, 128, 32), (128, 128, 32), (128, 256, 16), (256, 256, 16), (256, 128, 32),
             (128, 64, 64), (64, 32, 128), (32, 16, 256)],
    "cyclegan": [(3, 64, 256, 7, 1, 3, 1), (64, 128, 256, 3, 2, 1, 1), (128, 256, 128, 3, 2, 1, 1),
                 (256, 256, 64, 3, 1, 1, 18), (128, 256, 128, 4, 2, 1, 1), (64, 128, 256, 4, 2, 1, 1),
                 (64, 3, 256, 7, 1, 3, 1), (3, 64, 256, 4, 2, 1, 1), (64, 128, 128, 4, 2, 1, 1),
                 (128, 256, 64, 4, 2, 1, 1), (256, 512, 32, 4, 1, 1, 1), (512, 1, 31, 4, 1, 1, 1)],
}


def conv_task(a, dev):
    # the U-Net's 3x3 convolutions (or the CycleGAN's, --shapes cyclegan), forward + backward
    dt_all = 0
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    layout = " channels_last" if a.channels_last else ""
    for shape in CONV_SHAPES[a.shapes]:
        cin, cout, s, k, stride, pad, count = shape if len(shape) == 7 else shape + (3, 1, 1, 1)
        conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False).to(dev, dtype, memory_format=fmt)
        x = torch.rand(a.batch, cin, s, s, device=dev, dtype=dtype).to(memory_format=fmt).requires_grad_(True)
        so = (s + 2 * pad - k) // stride + 1
        gy = torch.rand(a.batch, cout, so, so, device=dev, dtype=dtype).to(memory_format=fmt)

        def step():
            x.grad = None
            conv.weight.grad = None
            conv(x).backward(gy)

        dt, _ = timed(step, a)
        dt_all += count * dt
        flop = 3 * 2 * a.batch * cout * so * so * cin * k * k
        if a.shapes == "unet":
            print(f"torch conv {a.precision} 3x3 {cin}->{cout} {s}x{s} batch {a.batch} fwd+bwd: "
                  f"{dt * 1e3:.3f} ms {flop / dt / 1e12:.1f} TFLOP/s")
        else:
            print(f"torch layout {a.precision}{layout} k{k} s{stride} {cin}->{cout} {s}x{s} batch {a.batch} "
                  f"fwd+bwd (x{count}): {dt * 1e3:.3f} ms {flop / dt / 1e12:.1f} TFLOP/s")
    if a.shapes == "unet":
        print(f"torch conv {a.precision} U-Net 3x3 layers, all: {dt_all * 1e3:.3f} ms")
    else:
        print(f"torch layout {a.precision}{layout} CycleGAN layers (a generator and a discriminator), "
              f"all: {dt_all * 1e3:.3f} ms")


def gemm_task(a, dev):
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    x = torch.rand(a.size, a.size, device=dev, dtype=dtype)
    y = torch.rand(a.size, a.size, device=dev, dtype=dtype)
    dt, _ = timed(lambda: x @ y, a)
    print(f"torch gemm {a.precision} {a.size}^3: {dt * 1e3:.3f} ms {2 * a.size ** 3 / dt / 1e12:.1f} TFLOP/s")


def main():
    runs = []
    argv = sys.argv[1:]
    while "--run" in argv:
        i = argv.index("--run")
        runs.append(shlex.split(argv[i + 1]))
        del argv[i:i + 2]
    for r in runs or [argv]:
        try:
            run_one(r)
        except (Exception, SystemExit) as e:  # one failed figure must not hide the others
            print(f"torch FAILED {' '.join(r)}: {type(e).__name__}: {e}")
            failed.append(r)
        sys.stdout.flush()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    sys.exit(1 if failed else 0)


failed = []


def run_one(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cnn")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--precision", default="tf32")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--task", default="step")
    p.add_argument("--device", default="cuda")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--shapes", default="unet", choices=["unet", "cyclegan"])
    p.add_argument("--check")
    p.add_argument("--check-cyclegan")
    p.add_argument("--tol-losses", type=float, default=1e-4)
    p.add_argument("--tol-update", type=float, default=1e-4)
    p.add_argument("--tol", type=float)
    p.add_argument("--factor", type=float)
    a = p.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    tf32 = a.precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dev = torch.device(a.device)
    if a.check:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        return check(a)
    if a.check_cyclegan:
        return check_cyclegan(a)
    if a.task == "conv":
        return conv_task(a, dev)
    if a.task == "gemm":
        return gemm_task(a, dev)
    if a.task == "cyclegan":
        dt, loss = timed(cyclegan_step_fn(a, dev), a)
        layout = " channels_last" if a.channels_last else ""
        print(f"torch {dev.type} {a.precision}{layout} cyclegan-step (2 generators + 2 patchgan) batch {a.batch} "
              f"3x{a.size}x{a.size}: {dt * 1e3:.3f} ms/step, {a.batch / dt:.1f} images/s (loss {loss.item():.4f})")
        return
    net = build_net(a.arch, a.channels, a.classes, a.size).to(dev)
    x = torch.rand(a.batch, a.channels, a.size, a.size, device=dev) - 0.5
    layout = ""
    if a.channels_last:  # PyTorch's faster layout for tensor cores (cairn keeps NCHW)
        net, x, layout = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last), " channels_last"
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    with torch.no_grad():
        out = net(x)
    y = (torch.arange(out.numel() // out.shape[1], device=dev) % out.shape[1]).view(
        out.shape[0], *out.shape[2:]) if out.dim() == 4 else torch.arange(a.batch, device=dev) % out.shape[1]
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    dt, loss = timed(step, a)
    print(f"torch {dev.type} {a.precision}{layout} {a.arch} batch {a.batch} {a.channels}x{a.size}x{a.size}: "
          f"{dt * 1e3:.3f} ms/step, {a.batch / dt:.0f} images/s (loss {loss.item():.4f})")


if __name__ == "__main__":
    main()
