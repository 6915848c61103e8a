#!/usr/bin/env python3
# bench/torch_segment.py: the PyTorch training script cairn-train-unet
# replaces, with its recipe (nn/segment.c, nn/train.c): the same U-Net
# (bench/torch_nets.py builds it from the same spec string), He-normal
# weights (a transposed conv's fan-in as cairn counts it: cin k k / stride^2)
# and zero biases, inputs (pixel/255 - 0.5) / 0.5, per-pixel softmax
# cross-entropy over labelled pixels (mask 255 left out) with optional class
# weights (auto: median-frequency balancing over the training shard's
# labelled pixels; the loss sum_p w[y_p] nll_p / sum_p w[y_p]), batches
# without the last partial one, each tile and its mask turned by one of the
# 8 symmetries of the square, SGD with Nesterov momentum 0.9, peak learning
# rate 0.05 with one epoch of linear warmup then cosine to 0 per step, weight
# decay 5e-4 on conv weights only; after every epoch the validation shard in
# evaluation mode: pixel accuracy, IoU per class, mean IoU over classes
# 1..K-1. It reads the same mask shards (docs/formats.md, "Mask shards").
# bench/nn.sh runs it beside cairn-train-unet.
# Usage: torch_segment.py --train SHARD --val SHARD [--arch SPEC] [--epochs N]
#        [--batch N] [--lr X] [--wd X] [--class-weights none|auto|W,W,..]
#        [--no-augment] [--seed N] [--device cpu|cuda]
import argparse, math, os, struct, sys, time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_nets import build_net  # noqa: E402

IGNORE = 255


def read_mask_shard(path):
    # 64-byte header (little-endian), then count records of C*H*W pixels,
    # H*W mask bytes and a 12-byte tile key
    with open(path, "rb") as f:
        head = f.read(64)
    if len(head) < 64 or head[:8] != b"CAIRNDS\0":
        raise SystemExit(f"{path}: not a cairn shard")
    version, hbytes, count, c, h, w, ptype, k, rbytes, _crc, kind = struct.unpack_from("<IIQIIIIIIII", head, 8)
    if version != 2 or kind != 1 or c == 0:
        raise SystemExit(f"{path}: not a mask shard with imagery (version {version}, label_kind {kind}, {c} channels)")
    if rbytes != c * h * w + h * w + 12:
        raise SystemExit(f"{path}: record size {rbytes}, expected {c * h * w + h * w + 12}")
    rec = np.fromfile(path, np.uint8, count * rbytes, offset=hbytes).reshape(count, rbytes)
    pix = rec[:, :c * h * w].reshape(count, c, h, w)
    mask = rec[:, c * h * w:c * h * w + h * w].reshape(count, h, w)
    x = (torch.from_numpy(pix.astype(np.float32)) / 255 - 0.5) / 0.5
    return x, torch.from_numpy(mask.astype(np.int64)), k


def class_weights(spec, mask, k):
    if spec == "none":
        return None
    if spec != "auto":
        w = [float(v) for v in spec.split(",")]
        if len(w) != k:
            raise SystemExit(f"--class-weights: {len(w)} given, the shard has {k} classes")
        return torch.tensor(w)
    # nn_segment_class_weights: w_k = median_j f_j / f_k over the classes present,
    # f_k the fraction of the labelled pixels (mask < K) of class k; absent classes 1
    counts = np.bincount(mask.numpy().ravel(), minlength=256)[:k].astype(np.float64)
    f = counts / counts.sum()
    med = np.median(f[counts > 0])
    return torch.tensor(np.where(counts > 0, med / np.maximum(f, 1e-300), 1.0), dtype=torch.float32)


def dihedral(x, y, sym):
    # one of the 8 symmetries of the square: bit 0 flips left-right, bit 1
    # up-down, bit 2 transposes (x: [C, H, W], y: [H, W])
    if sym & 1:
        x, y = x.flip(-1), y.flip(-1)
    if sym & 2:
        x, y = x.flip(-2), y.flip(-2)
    if sym & 4:
        x, y = x.transpose(-1, -2), y.transpose(-1, -2)
    return x, y


def evaluate(net, x, y, k, batch, dev):
    # nn_eval_segmenter: eval mode, argmax per pixel, confusion over labelled pixels
    net.eval()
    conf = torch.zeros(k * k, dtype=torch.int64)
    with torch.no_grad():
        for b in range(0, len(x), batch):
            pred = net(x[b:b + batch].to(dev)).argmax(1).cpu().ravel()
            t = y[b:b + batch].ravel()
            ok = t < k
            conf += torch.bincount(t[ok] * k + pred[ok], minlength=k * k)
    conf = conf.view(k, k).double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.tensor(float("nan"), dtype=torch.float64))
    keep = [c for c in range(k) if (c > 0 or k == 1) and union[c] > 0]  # background left out
    miou = float(iou[keep].mean()) if keep else float("nan")
    return float(tp.sum() / conf.sum().clamp(min=1)), iou.tolist(), miou


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--arch", default="unet:depth=3,base=8")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--class-weights", default="none")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    xtr, ytr, k = read_mask_shard(a.train)
    xva, yva, kv = read_mask_shard(a.val)
    if kv != k or xva.shape[1:] != xtr.shape[1:]:
        raise SystemExit(f"{a.train} and {a.val}: different tiles or classes")
    square = xtr.shape[-1] == xtr.shape[-2]
    net = build_net(a.arch, xtr.shape[1], k, xtr.shape[-1]).to(dev)
    for m in net.modules():  # cairn's initialization (nn/net.c nn_net_finish)
        if isinstance(m, nn.ConvTranspose2d):  # weight (cin, cout, k, k): fan-in cin k k / stride^2
            fan = m.weight.shape[0] * m.weight.shape[2] * m.weight.shape[3] / (m.stride[0] * m.stride[1])
            nn.init.normal_(m.weight, 0, math.sqrt(2 / fan))
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
            nn.init.zeros_(m.bias)
    decay = [q for q in net.parameters() if q.dim() > 1]
    rest = [q for q in net.parameters() if q.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd}, {"params": rest, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True)
    w = class_weights(a.class_weights, ytr, k)
    loss_fn = nn.CrossEntropyLoss(weight=None if w is None else w.to(dev), ignore_index=IGNORE)
    per_epoch = len(xtr) // a.batch
    if per_epoch == 0:
        raise SystemExit(f"--batch {a.batch} is larger than the {len(xtr)} records of {a.train}")
    warm, total = per_epoch, a.epochs * per_epoch

    def lr_at(t):  # nn/optim.c nn_optim_lr: linear warmup, then cosine to 0
        if t < warm:
            return a.lr * (t + 1) / warm
        return a.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - warm) / max(1, total - warm))))

    t, train_s = 0, 0.0
    for e in range(a.epochs):
        t0, loss_sum = time.perf_counter(), 0.0
        net.train()
        order = torch.randperm(len(xtr))
        for b in range(per_epoch):
            i = order[b * a.batch:(b + 1) * a.batch]
            x, y = xtr[i], ytr[i]
            if not a.no_augment:
                syms = torch.randint(0, 8 if square else 2, (len(i),)).tolist()
                pairs = [dihedral(x[j], y[j], s) for j, s in enumerate(syms)]
                x = torch.stack([q[0] for q in pairs])
                y = torch.stack([q[1] for q in pairs])
            for g in opt.param_groups:
                g["lr"] = lr_at(t)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x.contiguous().to(dev)), y.contiguous().to(dev))
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            t += 1
        train_s += time.perf_counter() - t0
        acc, iou, miou = evaluate(net, xva, yva, k, a.batch, dev)
        loss = loss_sum / per_epoch  # the epoch's mean, as cairn's metrics.json has it
        print(f"epoch {e + 1}/{a.epochs}: train loss {loss:.4f}, val pixel accuracy {acc:.4f}, "
              f"mean IoU {miou:.4f} (IoU per class {' '.join(f'{v:.3f}' for v in iou)})", file=sys.stderr)
    print(f"torch {dev.type} segmenter {a.arch} {a.epochs} epochs: val mean IoU {miou:.4f}, "
          f"pixel accuracy {acc:.4f}, train loss {loss:.4f}, training {train_s:.1f} s "
          f"({per_epoch * a.batch * a.epochs / train_s:.1f} tiles/s, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
