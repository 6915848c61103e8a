#!/usr/bin/env python3
# bench/torch_classifier.py: the PyTorch training script cairn-train-classifier
# replaces, with its recipe (nn/train.c): the same network (bench/cuda_torch.py
# builds it from the same spec string), batch 128 without the last partial
# batch, SGD with Nesterov momentum 0.9, peak learning rate 0.05 with one epoch
# of linear warmup then cosine decay to 0 per step, weight decay 5e-4 on conv
# and linear weights only, He-normal conv and LeCun-normal linear weights, zero biases, random
# horizontal flips, inputs (pixel/255 - 0.5) / 0.5; the test set in
# evaluation mode at the end. bench/nn.sh runs it
# beside cairn-train-classifier on Fashion-MNIST.
# Usage: torch_classifier.py --data DIR [--arch SPEC] [--epochs N] [--batch N]
#        [--lr X] [--wd X] [--seed N] [--device cpu|cuda]
import argparse, gzip, math, os, sys, time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_nets import build_net  # noqa: E402


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(d, part):
    x = idx(os.path.join(d, f"{part}-images-idx3-ubyte.gz"))
    y = idx(os.path.join(d, f"{part}-labels-idx1-ubyte.gz"))
    x = (torch.from_numpy(x.astype(np.float32)) / 255 - 0.5) / 0.5
    return x.unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--arch", default="cnn:widths=16-32,convs=2")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    net = build_net(a.arch, 1, 10, xtr.shape[-1]).to(dev)
    for m in net.modules():  # cairn's initialization (nn/net.h): He-normal conv weights,
        if isinstance(m, (nn.Conv2d, nn.Linear)):  # LeCun-normal linear weights, zero biases
            relu = isinstance(m, nn.Conv2d)
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu" if relu else "linear")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    decay = [q for q in net.parameters() if q.dim() > 1]
    rest = [q for q in net.parameters() if q.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd}, {"params": rest, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True)
    per_epoch = len(xtr) // a.batch
    warm, total = per_epoch, a.epochs * per_epoch

    def lr_at(t):  # nn/optim.c nn_optim_lr: linear warmup, then cosine to 0
        if t < warm:
            return a.lr * (t + 1) / warm
        return a.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - warm) / max(1, total - warm))))

    loss_fn, t, t0 = nn.CrossEntropyLoss(), 0, time.perf_counter()
    for e in range(a.epochs):
        net.train()
        order = torch.randperm(len(xtr))
        for b in range(per_epoch):
            i = order[b * a.batch:(b + 1) * a.batch]
            x, y = xtr[i], ytr[i]
            flip = torch.rand(len(i)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).to(dev)
            for g in opt.param_groups:
                g["lr"] = lr_at(t)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y.to(dev))
            loss.backward()
            opt.step()
            t += 1
    train_s = time.perf_counter() - t0
    net.eval()
    correct = 0
    with torch.no_grad():
        for b in range(0, len(xte), 1000):
            correct += (net(xte[b:b + 1000].to(dev)).argmax(1).cpu() == yte[b:b + 1000]).sum().item()
    print(f"torch {dev.type} classifier {a.arch} {a.epochs} epochs: test accuracy {correct / len(xte):.4f}, "
          f"training {train_s:.1f} s ({per_epoch * a.batch * a.epochs / train_s:.0f} images/s, "
          f"{torch.get_num_threads()} threads), last loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
