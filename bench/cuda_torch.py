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
#   cuda_torch.py --run "ARGS" --run "ARGS" ...   several of the above in one process
#                 (bench/cuda.sh: one import of torch instead of one per figure)
#   cuda_torch.py --check DIR [--tol T]   the mirror of the net bench/cuda_step --task dump
#                 wrote to DIR, given its weights and input: do its output, weight and
#                 input gradients match cairn's? (tests/integration/torch_mirror.sh)
# --device cpu runs any of them on the CPU (the checks; the timings then mean little).
import argparse, copy, os, shlex, sys, time
import torch
import torch.nn as nn


MASKS = None  # --check: cairn's ReLU masks, consumed in forward order (see Act)


class Act(nn.Module):
    # ReLU (alpha 0) or LeakyReLU; under --check it takes the side of the kink cairn took
    # (bench/cuda_step --task dump, masks.bin), so that one pre-activation within rounding
    # of 0 does not move every gradient below it
    def __init__(self, alpha=0.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        if MASKS is not None:
            m = MASKS.take(x.numel()).view(x.shape)
            return torch.where(m, x, x * self.alpha)
        return nn.functional.leaky_relu(x, self.alpha, True) if self.alpha else nn.functional.relu(x, True)


def conv_bn_relu(cin, cout, k=3, stride=1, groups=1, relu=True):
    # nn/model.c conv_bn_act: conv without bias (padding k / 2), batch norm, ReLU
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)] + (
        [Act()] if relu else [])


def small_cnn(cin, classes, size, widths=(32, 64), convs=1, fc=128, drop=0.25):
    # cnn:widths=32-64,convs=1,fc=128,drop=0.25 (issue #8's small CNN, 421,738 parameters
    # on 1x28x28): per width, `convs` x [conv3x3-BN-ReLU], 2x2 max pool; dropout, fc, ReLU,
    # dropout, classifier
    layers, c = [], cin
    for w in widths:
        for _ in range(convs):
            layers += conv_bn_relu(c, w)
            c = w
        layers.append(nn.MaxPool2d(2))
        size //= 2
    layers += [nn.Dropout(drop)] if drop > 0 else []
    layers.append(nn.Flatten())
    if fc > 0:
        layers += [nn.Linear(c * size * size, fc), Act()] + ([nn.Dropout(drop)] if drop > 0 else [])
        c, size = fc, 1
    layers.append(nn.Linear(c * size * size, classes))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    # unet:depth=D,base=B,bilinear=U: up-sampling by a 2x2 stride-2 transposed conv, or
    # (U=1) bilinear x2 (half-pixel centres) + conv3x3-BN-ReLU
    def __init__(self, cin, classes, depth=4, base=16, bilinear=0):
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
            self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                         *conv_bn_relu(c, w)) if bilinear else nn.ConvTranspose2d(c, w, 2, 2))
            self.dec.append(nn.Sequential(*conv_bn_relu(2 * w, w), *conv_bn_relu(w, w)))
            c = w
        self.head = nn.Conv2d(c, classes, 1)

    def forward_modules(self):
        # in the order cairn creates their nodes: down, then per level up and decoder, head
        return list(self.down) + [m for pair in zip(self.up, self.dec) for m in pair] + [self.head]

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


def resnet(cin, classes, size, depths=(2, 2, 2), widths=(32, 64, 128), groups=1, bottleneck=0, stem=32):
    # resnet:depths=3-4-6-3,widths=256-512-1024-2048,bottleneck=4,stem=64 is ResNet-50 v1.5
    # (stride on the 3x3, 1x1 + BN shortcut where the shape changes); bottleneck=0: two 3x3
    # convs a block; below 64x64 the stem is a 3x3 conv without pooling, as in nn/model.c
    class Block(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            if bottleneck > 0:
                mid = width // bottleneck
                self.body = nn.Sequential(
                    *conv_bn_relu(cin, mid, 1), *conv_bn_relu(mid, mid, 3, stride, groups),
                    *conv_bn_relu(mid, width, 1, relu=False))
            else:
                self.body = nn.Sequential(*conv_bn_relu(cin, width, 3, stride, groups),
                                          *conv_bn_relu(width, width, 3, 1, groups, relu=False))
            self.short = (nn.Sequential(*conv_bn_relu(cin, width, 1, stride, relu=False))
                          if stride != 1 or cin != width else nn.Identity())
            self.act = Act()

        def forward(self, x):
            return self.act(self.body(x) + self.short(x))

    if size >= 64:
        layers = conv_bn_relu(cin, stem, 7, 2) + [nn.MaxPool2d(3, 2, 1)]
    else:
        layers = conv_bn_relu(cin, stem)
    c = stem
    for s, (d, w) in enumerate(zip(depths, widths)):
        for b in range(d):
            layers.append(Block(c, w, 2 if s > 0 and b == 0 else 1))
            c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


def cyclegan_generator(base=64, blocks=9, down=2, cout=3, cin=3):
    # cyclegan:base=64,blocks=9 as nn/model.c builds it: zero padding, 4x4 stride-2
    # transposed convs, affine instance norm
    def c_in_relu(cin, cout, k, s, p, relu=True):
        return [nn.Conv2d(cin, cout, k, s, p, bias=False), nn.InstanceNorm2d(cout, affine=True)] + (
            [Act()] if relu else [])

    class Res(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.body = nn.Sequential(*c_in_relu(w, w, 3, 1, 1), *c_in_relu(w, w, 3, 1, 1, False))

        def forward(self, x):
            return x + self.body(x)

    layers, w = c_in_relu(cin, base, 7, 1, 3), base
    for _ in range(down):
        layers += c_in_relu(w, 2 * w, 3, 2, 1)
        w *= 2
    layers += [Res(w) for _ in range(blocks)]
    for _ in range(down):
        layers += [nn.ConvTranspose2d(w, w // 2, 4, 2, 1, bias=False), nn.InstanceNorm2d(w // 2, affine=True),
                   Act()]
        w //= 2
    layers += [nn.Conv2d(w, cout, 7, 1, 3), nn.Tanh()]
    return nn.Sequential(*layers)


def patchgan(base=64, layers=3, cin=3):
    seq, w = [nn.Conv2d(cin, base, 4, 2, 1), Act(0.2)], base
    for i in range(1, layers + 1):
        cout = base << min(i, 3)
        seq += [nn.Conv2d(w, cout, 4, 2 if i < layers else 1, 1, bias=False),
                nn.InstanceNorm2d(cout, affine=True), Act(0.2)]
        w = cout
    seq.append(nn.Conv2d(w, 1, 4, 1, 1))
    return nn.Sequential(*seq)


# the families' options and defaults, as nn/model.c's table
FAMILIES = {
    "cnn": dict(widths=[32, 64], convs=1, fc=128, drop=0.25),
    "resnet": dict(depths=[2, 2, 2], widths=[32, 64, 128], groups=1, bottleneck=0, stem=32),
    "resnext": dict(depths=[1, 1, 1], widths=[64, 128, 256], groups=8, bottleneck=2, stem=32),
    "unet": dict(depth=4, base=16, bilinear=0),
    "cyclegan": dict(base=64, blocks=9, down=2),
    "patchgan": dict(base=64, layers=3),
}


def parse_spec(spec):
    fam, _, opts = spec.partition(":")
    if fam not in FAMILIES:
        raise SystemExit(f"arch '{spec}': no PyTorch mirror of family '{fam}' (mirrored: {', '.join(FAMILIES)})")
    o = dict(FAMILIES[fam])
    for kv in filter(None, opts.split(",")):
        k, _, v = kv.partition("=")
        if k not in o:
            raise SystemExit(f"arch '{spec}': unknown option '{k}'")
        o[k] = [int(x) for x in v.split("-")] if isinstance(o[k], list) else float(v) if k == "drop" else int(v)
    return fam, o


def build_net(spec, cin, classes, size):
    fam, o = parse_spec(spec)
    if fam == "cnn":
        return small_cnn(cin, classes, size, o["widths"], o["convs"], o["fc"], o["drop"])
    if fam in ("resnet", "resnext"):
        return resnet(cin, classes, size, o["depths"], o["widths"], o["groups"], o["bottleneck"], o["stem"])
    if fam == "unet":
        return UNet(cin, classes, o["depth"], o["base"], o["bilinear"])
    if fam == "cyclegan":
        return cyclegan_generator(o["base"], o["blocks"], o["down"], classes, cin)
    return patchgan(o["base"], o["layers"], cin)


def forward_modules(net):
    return net.forward_modules() if hasattr(net, "forward_modules") else [net]


def forward_params(net):
    # the trainable parameters in the order cairn creates them (bench/cuda_step --task dump)
    return [p for m in forward_modules(net) for p in m.parameters()]


def forward_stats(net):
    # batch norm's running means and variances, in cairn's order (stats.bin)
    bns = [b for m in forward_modules(net) for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    return [t for b in bns for t in (b.running_mean, b.running_var)]


class Masks:
    def __init__(self, m):
        self.m, self.at = m, 0

    def take(self, n):
        if self.at + n > self.m.numel():
            raise SystemExit("check: the mirror has more ReLU outputs than cairn's net: not the same network")
        self.at += n
        return self.m[self.at - n:self.at]


def mirror_forward(net, x, masks, spec, bf16):
    # net(x) with cairn's ReLU masks (bf16: under autocast)
    global MASKS
    MASKS = Masks(masks)
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            y = net(x)
        if MASKS.at != masks.numel():
            raise SystemExit(f"check {spec}: the mirror's activations used {MASKS.at} of cairn's "
                             f"{masks.numel()} ReLU outputs: not the same network")
    finally:
        MASKS = None
    return y


def mirror_pass(net, params, flat, x, dy, masks, spec, bf16=False):
    # forward with cairn's weights and ReLU masks (bf16: under autocast), backward from dy:
    # output, input gradient, the parameters' gradients (in cairn's order)
    with torch.no_grad():
        at = 0
        for p in params:
            p.copy_(flat[at:at + p.numel()].view(p.shape))
            p.grad = None
            at += p.numel()
    x = x.clone().requires_grad_(True)
    y = mirror_forward(net, x, masks, spec, bf16)
    y.backward(dy.view(y.shape).to(y.dtype))
    return y.detach().reshape(-1), x.grad.reshape(-1), [p.grad.reshape(-1) for p in params]


def check_losses(a, d, load, y, tol):
    # cairn's four losses on its own output (bench/cuda_step.c dump_losses) against
    # PyTorch's functional ones in float64 on the same output: values and gradients
    F = nn.functional
    labels = load("labels.bin", torch.int32).long()
    t, w = load("t.bin").double().view(y.shape), load("w.bin").double().view(y.shape)
    values = {l.split()[0]: float(l.split()[1]) for l in open(d("losses.txt"))}
    todo = [("bce", lambda x: F.binary_cross_entropy_with_logits(x, t, weight=w)),
            ("l1", lambda x: F.l1_loss(x, t)), ("mse", lambda x: F.mse_loss(x, t))]
    if y.shape[1] >= 2:
        cw = load("cw.bin").double()
        lab = labels.view(y.shape[0], *y.shape[2:]) if y.shape[2] * y.shape[3] > 1 else labels
        x2 = (lambda x: x) if y.shape[2] * y.shape[3] > 1 else (lambda x: x.view(y.shape[0], y.shape[1]))
        todo.insert(0, ("xent", lambda x: F.cross_entropy(x2(x), lab, weight=cw, ignore_index=-1)))
    worst, ok = (0.0, ""), True
    for name, fn in todo:
        x = y.clone().requires_grad_(True)
        loss = fn(x)
        loss.backward()
        ev = abs(values[name] - loss.item()) / max(abs(loss.item()), 1e-30)
        g = load(f"d{name}.bin").double().view(y.shape)
        eg = ((g - x.grad).norm() / x.grad.norm().clamp_min(1e-300)).item()
        ok = ok and ev <= tol and eg <= tol
        worst = max(worst, (max(ev, eg), name))
    return f"losses {'/'.join(n for n, _ in todo)} against PyTorch's within {worst[0]:.1e} (worst: {worst[1]})", ok


def check_optim(d, load, params, decay, flat, grads, tol):
    # cairn's optimizer steps (bench/cuda_step.c dump_optim) against torch.optim's from the
    # same weights with the same gradients and learning rates, in float64: the relative L2
    # error of each configuration's total update
    worst, ok, names = (0.0, ""), True, []
    for line in open(d("optim.txt")):
        name, kind, mom, nest, wd, decoupled, *lrs = line.split()
        mom, nest, wd, decoupled, lrs = float(mom), int(nest), float(wd), int(decoupled), [float(v) for v in lrs]
        ws = [flat[at:at + n].double().view(p.shape).clone().requires_grad_(True) for p, at, n in params]
        for w, (p, at, n) in zip(ws, params):
            w.grad = grads[at:at + n].double().view(p.shape).clone()
        groups = [{"params": [w for w, dec in zip(ws, decay) if dec], "weight_decay": wd},
                  {"params": [w for w, dec in zip(ws, decay) if not dec], "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        if kind == "sgd":
            opt = torch.optim.SGD(groups, lr=lrs[0], momentum=mom, nesterov=bool(nest))
        else:
            opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)(groups, lr=lrs[0], betas=(0.9, 0.999), eps=1e-8)
        for lr in lrs:
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
        w0 = torch.cat([flat[at:at + n].double() for _, at, n in params])
        ref = torch.cat([w.detach().reshape(-1) for w in ws]) - w0
        got = torch.cat([load(f"opt-{name}.bin").double()]) - w0
        e = ((got - ref).norm() / ref.norm().clamp_min(1e-300)).item()
        ok = ok and e == e and e <= tol
        worst = max(worst, (e, name))
        names.append(name)
    return f"optimizers {'/'.join(names)} against torch.optim within {worst[0]:.1e} (worst: {worst[1]})", ok


def check(a):
    # cairn's pass (bench/cuda_step --task dump) against the mirror's in float64, given the
    # same weights, input, output gradient and ReLU masks, beside the mirror's own error in
    # cairn's precision (float32, or bf16 autocast for a bf16 dump): each of cairn's output,
    # input gradient and weight gradients must be within max(tol, factor x PyTorch's error)
    # of float64 (relative L2 errors; tol 1e-4 and factor 10 in fp32, 1e-2 and 3 in bf16)
    d = lambda name: os.path.join(a.check, name)
    meta = [line.split() for line in open(d("meta.txt"))]
    kv = {m[0]: m[1:] for m in meta if m[0] != "param"}
    names = [m[1] for m in meta if m[0] == "param"]
    theirs = [int(m[2]) * int(m[3]) * int(m[4]) * int(m[5]) for m in meta if m[0] == "param"]
    batch, (c, h, w), (oc, oh, ow) = int(kv["batch"][0]), map(int, kv["input"]), map(int, kv["output"])
    spec, dev = kv["arch"][0], torch.device(a.device)
    fam, o = parse_spec(spec)
    if o.get("drop", 0) > 0:
        raise SystemExit(f"check {spec}: dropout draws its masks differently in cairn and PyTorch: dump with drop=0")
    load = lambda name, dtype=torch.float32: torch.from_file(
        d(name), size=os.path.getsize(d(name)) // torch.empty(0, dtype=dtype).element_size(), dtype=dtype).to(dev)
    net = build_net(spec, c, oc, h).to(dev).train()
    params = forward_params(net)
    ours = [p.numel() for p in params]
    if ours != theirs:
        first = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
        raise SystemExit(f"check {spec}: the mirror's parameters differ from cairn's: {len(ours)} tensors, "
                         f"{sum(ours)} values against {len(theirs)}, {sum(theirs)}; first difference at "
                         f"tensor {first} (cairn's {names[first] if first < len(names) else 'none'})")
    flat, x, dy, masks = load("params.bin"), load("in.bin").view(batch, c, h, w), load("dy.bin"), load(
        "masks.bin", torch.bool)
    if dy.numel() != batch * oc * oh * ow:
        raise SystemExit(f"check {spec}: dy.bin holds {dy.numel()} values, not the output's {batch * oc * oh * ow}")
    prec = kv.get("precision", ["fp32"])[0]
    bf16 = prec == "bf16"
    tol = a.tol if a.tol is not None else 1e-2 if bf16 else 1e-4
    factor = a.factor if a.factor is not None else 3 if bf16 else 10
    t32 = mirror_pass(net, params, flat, x, dy, masks, spec, bf16)
    stats32 = [t.detach().double().clone() for t in forward_stats(net)]
    net64 = copy.deepcopy(net).double()
    for b in net64.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.reset_running_stats()
    t64 = mirror_pass(net64, forward_params(net64), flat.double(), x.double(), dy.double(), masks, spec)
    cg, at, cgrads = load("grads.bin"), 0, []
    for n in ours:
        cgrads.append(cg[at:at + n])
        at += n
    cairn = (load("out.bin"), load("dx.bin"), cgrads)

    def err(got, ref):
        return ((got.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()

    rows, ok = [], True
    for what, ci, ti, ri in (("output", cairn[0], t32[0], t64[0]), ("input gradient", cairn[1], t32[1], t64[1])):
        rows.append((what, err(ci, ri), err(ti, ri)))
    worst = max(((err(cgr, r), err(tgr, r), n) for cgr, tgr, r, n in zip(cairn[2], t32[2], t64[2], names)),
                key=lambda e: e[0] / max(tol, factor * e[1]))
    rows.append((f"weight gradients (worst: cairn's {worst[2]})", worst[0], worst[1]))
    for _, ec, et in rows:
        ok = ok and ec == ec and ec <= max(tol, factor * et)
    stats_row = ""
    if os.path.exists(d("stats.bin")):
        ref = forward_stats(net64)
        got = load("stats.bin").double()
        if got.numel() != sum(t.numel() for t in ref):
            raise SystemExit(f"check {spec}: stats.bin holds {got.numel()} values, the mirror's batch norms "
                             f"{sum(t.numel() for t in ref)}: not the same network")
        worst_s, at = (0.0, 0.0), 0
        for t, t32 in zip(ref, stats32):  # per tensor: a small group's variance must not hide
            g = got[at:at + t.numel()]
            at += t.numel()
            es, et = err(g, t.reshape(-1)), err(t32.reshape(-1), t.reshape(-1))
            ok = ok and es == es and es <= max(tol, factor * et)
            worst_s = max(worst_s, (es, et), key=lambda e: e[0] / max(tol, factor * e[1]))
        stats_row = f"; batch norm running statistics {worst_s[0]:.1e} ({worst_s[1]:.1e})"
    if os.path.exists(d("eval.bin")):
        # evaluation mode after the pass: batch norm with the running statistics
        # each side has just updated, the ReLUs on cairn's side (eval-masks.bin)
        em = load("eval-masks.bin", torch.bool)
        with torch.no_grad():
            e32 = mirror_forward(net.eval(), x, em, spec, bf16).reshape(-1)
            e64 = mirror_forward(net64.eval(), x.double(), em, spec, False).reshape(-1)
        rows.append(("evaluation output", err(load("eval.bin"), e64), err(e32, e64)))
        ok = ok and rows[-1][1] == rows[-1][1] and rows[-1][1] <= max(tol, factor * rows[-1][2])
    loss_row = check_losses(a, d, load, cairn[0].double().view(batch, oc, oh, ow), 1e-5)
    spans, at = [], 0
    for p in params:
        spans.append((p, at, p.numel()))
        at += p.numel()
    decay = [m[6] == "1" if len(m) > 6 else m[1].endswith(".w") for m in meta if m[0] == "param"]
    opt_row = check_optim(d, load, spans, decay, flat, load("grads.bin"), 1e-4)
    ok = ok and loss_row[1] and opt_row[1]
    print(f"torch check [{os.path.basename(os.path.normpath(a.check))}] {spec} {prec} batch {batch} {c}x{h}x{w}: {len(params)} tensors, {sum(ours)} parameters; "
          f"error against float64, cairn (PyTorch {'bf16 autocast' if bf16 else 'float32'}): " +
          ", ".join(f"{w_} {ec:.1e} ({et:.1e})" for w_, ec, et in rows) + stats_row +
          f"; bound max({tol:g}, {factor:g} x PyTorch's); {loss_row[0]}; {opt_row[0]}: {'ok' if ok else 'FAILED'}")
    if not ok:
        raise SystemExit(1)


def set_requires_grad(nets, flag):
    for n in nets:
        for p in n.parameters():
            p.requires_grad_(flag)


def cyclegan_step_fn(a, dev, nets=None, reals=None, parts=None):
    # Zhu et al.'s optimize_parameters: LSGAN, cycle 10, identity 5, Adam(2e-4, 0.5);
    # nets (G_A, G_B, D_A, D_B) and reals (A, B) given by --check-cyclegan, else fresh;
    # parts: a list that gets the step's ten losses in cuda_step's order (cg_dump)
    ga, gb, da, db = nets or (cyclegan_generator().to(dev), cyclegan_generator().to(dev),
                              patchgan().to(dev), patchgan().to(dev))
    og = torch.optim.Adam(list(ga.parameters()) + list(gb.parameters()), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(list(da.parameters()) + list(db.parameters()), lr=2e-4, betas=(0.5, 0.999))
    real_a, real_b = reals or (torch.rand(a.batch, 3, a.size, a.size, device=dev) * 2 - 1,
                               torch.rand(a.batch, 3, a.size, a.size, device=dev) * 2 - 1)
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    auto = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16")

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
            g = [gan(db(fake_b), True), gan(da(fake_a), True), l1(rec_a, real_a), l1(rec_b, real_b),
                 l1(ga(real_b), real_b), l1(gb(real_a), real_a)]
            loss_g = g[0] + g[1] + (g[2] + g[3]) * 10 + (g[4] + g[5]) * 5
        loss_g.backward()
        og.step()
        set_requires_grad([da, db], True)
        od.zero_grad(set_to_none=True)
        with torch.autocast(**auto):
            d = [gan(da(real_a), True), gan(da(fake_a.detach()), False), gan(db(real_b), True),
                 gan(db(fake_b.detach()), False)]
            loss_da, loss_db = (d[0] + d[1]) * 0.5, (d[2] + d[3]) * 0.5
        loss_da.backward()
        loss_db.backward()
        od.step()
        if parts is not None:
            parts.extend(v.item() for v in g + d)
        return loss_g

    return step


def check_cyclegan(a):
    # bench/cuda_step --task cyclegan --out DIR: cairn's CycleGAN step from its weights and
    # images against the reference step (cyclegan_step_fn) in float64 from the same: the ten
    # losses (relative error) and each module's weight update (relative L2; Adam's first step
    # moves each weight by about lr in the direction of its gradient's sign)
    d = lambda name: os.path.join(a.check_cyclegan, name)
    kv = {line.split()[0]: line.split()[1:] for line in open(d("cyclegan.txt"))}
    size, batch = int(kv["size"][0]), int(kv["batch"][0])
    load = lambda name: torch.from_file(d(name), size=os.path.getsize(d(name)) // 4, dtype=torch.float32).double()
    nets = [cyclegan_generator().double(), cyclegan_generator().double(), patchgan().double(), patchgan().double()]
    names = ["G_A", "G_B", "D_A", "D_B"]
    before = []
    for net, name in zip(nets, names):
        w, ps = load(f"{name}.bin"), list(net.parameters())
        if w.numel() != sum(p.numel() for p in ps):
            raise SystemExit(f"check-cyclegan: {name}.bin holds {w.numel()} values, the mirror {sum(p.numel() for p in ps)}")
        with torch.no_grad():
            at = 0
            for p in ps:
                p.copy_(w[at:at + p.numel()].view(p.shape))
                at += p.numel()
        before.append(w)
    reals = [load("real_A.bin").view(batch, 3, size, size), load("real_B.bin").view(batch, 3, size, size)]
    parts = []
    a.precision = "fp32"
    global MASKS
    masks = torch.from_file(d("masks.bin"), size=os.path.getsize(d("masks.bin")), dtype=torch.bool)
    MASKS = Masks(masks)  # every ReLU on cairn's side of its kink, as in check
    try:
        cyclegan_step_fn(a, torch.device("cpu"), nets, reals, parts)()
        if MASKS.at != masks.numel():
            raise SystemExit(f"check-cyclegan: the reference step used {MASKS.at} of cairn's {masks.numel()} "
                             "ReLU outputs: not the same step")
    finally:
        MASKS = None
    theirs = [float(v) for v in kv["losses"]]
    loss_err = max(abs(x - y) / max(abs(y), 1e-30) for x, y in zip(theirs, parts))
    upd = []
    for net, name, w0 in zip(nets, names, before):
        ref = torch.cat([p.detach().reshape(-1) for p in net.parameters()]) - w0
        got = load(f"{name}-after.bin") - w0
        # where the gradient is within rounding of 0 (a conv bias before a norm has none,
        # a weight whose uses cancel), Adam's first step, lr g / (|g| + eps), is rounding
        # amplified to a full step on either side: compare where |g| > 1e-3 rms(g)
        g = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
        m = g.abs() > 1e-3 * g.pow(2).mean().sqrt()
        upd.append(((got - ref)[m].norm() / ref[m].norm().clamp_min(1e-300)).item())
        upd[-1] = (upd[-1], m.float().mean().item())
    ok = loss_err <= a.tol_losses and all(e == e and e <= a.tol_update for e, _ in upd)
    print(f"torch check-cyclegan [{os.path.basename(os.path.normpath(a.check_cyclegan))}] batch {batch} 3x{size}x{size}: the ten losses within {loss_err:.1e} of "
          f"PyTorch's in float64; weight updates " + ", ".join(f"{n} {e:.1e} (over {f:.2%} of it)" for n, (e, f) in zip(names, upd)) +
          f" (bounds {a.tol_losses:g}, {a.tol_update:g}): {'ok' if ok else 'FAILED'}")
    if not ok:
        raise SystemExit(1)


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
        print(f"torch {dev.type} {a.precision} cyclegan-step (2 generators + 2 patchgan) batch {a.batch} "
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
