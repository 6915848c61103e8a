#!/usr/bin/env python3
# bench/cuda_torch.py: the PyTorch side of bench/cuda.sh: the same networks
# as cairn's nn/model.c specs, one training step (forward, cross-entropy over
# the output channels, backward, SGD) timed after warm-up, printed in
# bench/cuda_step's format. Usage:
#   cuda_torch.py --arch cnn|unet --batch N --size S --channels C --classes K --precision fp32|tf32|bf16
import argparse, time
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cnn")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--precision", default="tf32")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    tf32 = a.precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dev = torch.device("cuda")
    net = (small_cnn(a.channels, a.classes, a.size) if a.arch == "cnn"
           else UNet(a.channels, a.classes)).to(dev)
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

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    print(f"torch cuda {a.precision} {a.arch} batch {a.batch} {a.channels}x{a.size}x{a.size}: "
          f"{dt * 1e3:.3f} ms/step, {a.batch / dt:.0f} images/s (loss {loss.item():.4f})")


if __name__ == "__main__":
    main()
