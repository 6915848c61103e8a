#!/usr/bin/env python3
# bench/cuda_torch.py: the PyTorch side of bench/cuda.sh: the same networks
# as cairn's nn/model.c specs, one training step (forward, cross-entropy over
# the output channels, backward, SGD) timed after warm-up, printed in
# bench/cuda_step's format; the CycleGAN step of Zhu et al.'s reference code;
# the U-Net's 3x3 convolutions (forward + backward) and a square matmul.
# Usage:
#   cuda_torch.py --arch cnn|unet|resnet50|cyclegan --batch N --size S --channels C --classes K
#                 --precision fp32|tf32|bf16
#   cuda_torch.py --task conv|gemm --precision P [--batch 8] [--size 8192]
#   cuda_torch.py --run "ARGS" --run "ARGS" ...   several of the above in one process
#                 (bench/cuda.sh: one import of torch instead of one per figure)
import argparse, shlex, sys, time
import torch
import torch.nn as nn


def conv_bn_relu(cin, cout):
    # nn/model.c conv_bn_act: 3x3 conv without bias, batch norm, ReLU
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def small_cnn(cin, classes, size):
    # cnn:widths=16-32,convs=2,fc=128,drop=0.25
    layers, c = [], cin
    for w in (16, 32):
        layers += conv_bn_relu(c, w) + conv_bn_relu(w, w) + [nn.MaxPool2d(2)]
        c = w
    s = size // 4
    layers += [nn.Dropout(0.25), nn.Flatten(), nn.Linear(c * s * s, 128), nn.ReLU(inplace=True),
               nn.Dropout(0.25), nn.Linear(128, classes)]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    # unet:depth=D,base=B with transposed-conv up-sampling (k2 s2)
    def __init__(self, cin, classes, depth=4, base=16):
        super().__init__()
        self.depth = depth
        self.down = nn.ModuleList()
        c = cin
        for l in range(depth + 1):
            w = base << l
            self.down.append(nn.Sequential(*conv_bn_relu(c, w), *conv_bn_relu(w, w)))
            c = w
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        for l in range(depth - 1, -1, -1):
            w = base << l
            self.up.append(nn.ConvTranspose2d(c, w, 2, 2))
            self.dec.append(nn.Sequential(*conv_bn_relu(2 * w, w), *conv_bn_relu(w, w)))
            c = w
        self.head = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        skips = []
        for l, blk in enumerate(self.down):
            if l > 0:
                x = nn.functional.max_pool2d(x, 2)
            x = blk(x)
            skips.append(x)
        for i, (up, dec) in enumerate(zip(self.up, self.dec)):
            x = dec(torch.cat([up(x), skips[self.depth - 1 - i]], 1))
        return self.head(x)


def bottleneck_resnet(cin, classes, depths=(3, 4, 6, 3), widths=(256, 512, 1024, 2048), stem=64):
    # resnet:depths=3-4-6-3,widths=256-512-1024-2048,bottleneck=4,stem=64 (ResNet-50 v1.5:
    # stride on the 3x3, 1x1 + BN shortcut where the shape changes)
    class Block(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            mid = width // 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, width, 1, bias=False), nn.BatchNorm2d(width))
            self.short = (nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))
                          if stride != 1 or cin != width else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    layers = [nn.Conv2d(cin, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    c = stem
    for s, (d, w) in enumerate(zip(depths, widths)):
        for b in range(d):
            layers.append(Block(c, w, 2 if s > 0 and b == 0 else 1))
            c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


def cyclegan_generator(base=64, blocks=9):
    # cyclegan:base=64,blocks=9 as nn/model.c builds it: zero padding, 4x4 stride-2
    # transposed convs, affine instance norm
    def c_in_relu(cin, cout, k, s, p, relu=True):
        return [nn.Conv2d(cin, cout, k, s, p, bias=False), nn.InstanceNorm2d(cout, affine=True)] + (
            [nn.ReLU(inplace=True)] if relu else [])

    class Res(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.body = nn.Sequential(*c_in_relu(w, w, 3, 1, 1), *c_in_relu(w, w, 3, 1, 1, False))

        def forward(self, x):
            return x + self.body(x)

    layers = c_in_relu(3, base, 7, 1, 3) + c_in_relu(base, 2 * base, 3, 2, 1) + c_in_relu(2 * base, 4 * base, 3, 2, 1)
    layers += [Res(4 * base) for _ in range(blocks)]
    for w in (2 * base, base):
        layers += [nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.InstanceNorm2d(w, affine=True),
                   nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(base, 3, 7, 1, 3), nn.Tanh()]
    return nn.Sequential(*layers)


def patchgan(base=64, layers=3):
    seq, w = [nn.Conv2d(3, base, 4, 2, 1), nn.LeakyReLU(0.2, True)], base
    for i in range(1, layers + 1):
        cout = base << min(i, 3)
        seq += [nn.Conv2d(w, cout, 4, 2 if i < layers else 1, 1, bias=False),
                nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2, True)]
        w = cout
    seq.append(nn.Conv2d(w, 1, 4, 1, 1))
    return nn.Sequential(*seq)


def set_requires_grad(nets, flag):
    for n in nets:
        for p in n.parameters():
            p.requires_grad_(flag)


def cyclegan_step_fn(a, dev):
    # Zhu et al.'s optimize_parameters: LSGAN, cycle 10, identity 5, Adam(2e-4, 0.5)
    ga, gb = cyclegan_generator().to(dev), cyclegan_generator().to(dev)
    da, db = patchgan().to(dev), patchgan().to(dev)
    og = torch.optim.Adam(list(ga.parameters()) + list(gb.parameters()), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(list(da.parameters()) + list(db.parameters()), lr=2e-4, betas=(0.5, 0.999))
    real_a = torch.rand(a.batch, 3, a.size, a.size, device=dev) * 2 - 1
    real_b = torch.rand(a.batch, 3, a.size, a.size, device=dev) * 2 - 1
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    auto = dict(device_type="cuda", dtype=torch.bfloat16, enabled=a.precision == "bf16")

    def gan(pred, real):
        return mse(pred, torch.ones_like(pred) if real else torch.zeros_like(pred))

    def step():
        with torch.autocast(**auto):
            fake_b = ga(real_a)
            rec_a = gb(fake_b)
            fake_a = gb(real_b)
            rec_b = ga(fake_a)
        set_requires_grad([da, db], False)
        og.zero_grad(set_to_none=True)
        with torch.autocast(**auto):
            loss_g = (l1(ga(real_b), real_b) * 5 + l1(gb(real_a), real_a) * 5 + gan(db(fake_b), True)
                      + gan(da(fake_a), True) + l1(rec_a, real_a) * 10 + l1(rec_b, real_b) * 10)
        loss_g.backward()
        og.step()
        set_requires_grad([da, db], True)
        od.zero_grad(set_to_none=True)
        with torch.autocast(**auto):
            loss_da = (gan(da(real_a), True) + gan(da(fake_a.detach()), False)) * 0.5
            loss_db = (gan(db(real_b), True) + gan(db(fake_b.detach()), False)) * 0.5
        loss_da.backward()
        loss_db.backward()
        od.step()
        return loss_g

    return step


def timed(step, a):
    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        out = step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / a.steps, out


def conv_task(a, dev):
    # the 3x3 convolutions of unet:depth=4,base=16 on 3x256x256 (bench/cuda_step.c unet_convs)
    shapes = [(3, 16, 256), (16, 16, 256), (16, 32, 128), (32, 32, 128), (32, 64, 64), (64, 64, 64),
              (64, 128, 32), (128, 128, 32), (128, 256, 16), (256, 256, 16), (256, 128, 32),
              (128, 64, 64), (64, 32, 128), (32, 16, 256)]
    dt_all = 0
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    for cin, cout, s in shapes:
        conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False).to(dev, dtype)
        x = torch.rand(a.batch, cin, s, s, device=dev, dtype=dtype).requires_grad_(True)
        gy = torch.rand(a.batch, cout, s, s, device=dev, dtype=dtype)

        def step():
            x.grad = None
            conv.weight.grad = None
            conv(x).backward(gy)

        dt, _ = timed(step, a)
        dt_all += dt
        flop = 3 * 2 * a.batch * cout * s * s * cin * 9
        print(f"torch conv {a.precision} 3x3 {cin}->{cout} {s}x{s} batch {a.batch} fwd+bwd: "
              f"{dt * 1e3:.3f} ms {flop / dt / 1e12:.1f} TFLOP/s")
    print(f"torch conv {a.precision} U-Net 3x3 layers, all: {dt_all * 1e3:.3f} ms")


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
    a = p.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    tf32 = a.precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dev = torch.device("cuda")
    if a.task == "conv":
        return conv_task(a, dev)
    if a.task == "gemm":
        return gemm_task(a, dev)
    if a.arch == "cyclegan":
        dt, loss = timed(cyclegan_step_fn(a, dev), a)
        print(f"torch cuda {a.precision} cyclegan-step (2 generators + 2 patchgan) batch {a.batch} "
              f"3x{a.size}x{a.size}: {dt * 1e3:.3f} ms/step, {a.batch / dt:.1f} images/s (loss {loss.item():.4f})")
        return
    if a.arch == "cnn":
        net = small_cnn(a.channels, a.classes, a.size)
    elif a.arch == "resnet50":
        net = bottleneck_resnet(a.channels, a.classes)
    else:
        net = UNet(a.channels, a.classes)
    net = net.to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(a.batch, a.channels, a.size, a.size, device=dev) - 0.5
    with torch.no_grad():
        out = net(x)
    y = (torch.arange(out.numel() // out.shape[1], device=dev) % out.shape[1]).view(
        out.shape[0], *out.shape[2:]) if out.dim() == 4 else torch.arange(a.batch, device=dev) % out.shape[1]
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    dt, loss = timed(step, a)
    print(f"torch cuda {a.precision} {a.arch} batch {a.batch} {a.channels}x{a.size}x{a.size}: "
          f"{dt * 1e3:.3f} ms/step, {a.batch / dt:.0f} images/s (loss {loss.item():.4f})")


if __name__ == "__main__":
    main()
