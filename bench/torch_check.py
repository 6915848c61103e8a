#!/usr/bin/env python3
# bench/torch_check.py: cairn's passes (bench/cuda_step --task dump, --task
# cyclegan --out) against their PyTorch mirrors (bench/torch_nets.py) in
# float64, from the same weights, inputs and ReLU masks: bench/cuda_torch.py
# --check DIR and --check-cyclegan DIR run these
# (tests/integration/torch_mirror.sh).
import copy, os

import torch
import torch.nn as nn

import torch_nets
from torch_nets import (Masks, build_net, cyclegan_generator, cyclegan_step_fn, forward_params, forward_stats,
                        parse_spec, patchgan)


def mirror_forward(net, x, masks, spec, bf16):
    # net(x) with cairn's ReLU masks (bf16: under autocast)
    torch_nets.MASKS = m = Masks(masks)
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            y = net(x)
        if m.at != masks.numel():
            raise SystemExit(f"check {spec}: the mirror's activations used {m.at} of cairn's "
                             f"{masks.numel()} ReLU outputs: not the same network")
    finally:
        torch_nets.MASKS = None
    return y


def load_weights(params, flat):
    # a flat buffer of weights (cairn's dump order) into the parameters; their gradients cleared
    with torch.no_grad():
        at = 0
        for p in params:
            p.copy_(flat[at:at + p.numel()].view(p.shape))
            p.grad = None
            at += p.numel()


def mirror_pass(net, params, flat, x, dy, masks, spec, bf16=False):
    # forward with cairn's weights and ReLU masks (bf16: under autocast), backward from dy:
    # output, input gradient, the parameters' gradients (in cairn's order)
    load_weights(params, flat)
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
    prec = kv["precision"][0]
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

    def slack(e):  # (cairn's error, PyTorch's): how much of its bound cairn's uses; > 1 fails
        return e[0] / max(tol, factor * e[1]) if e[0] == e[0] else float("inf")

    rows = [("output", err(cairn[0], t64[0]), err(t32[0], t64[0])),
            ("input gradient", err(cairn[1], t64[1]), err(t32[1], t64[1]))]
    worst = max(((err(cgr, r), err(tgr, r), n) for cgr, tgr, r, n in zip(cairn[2], t32[2], t64[2], names)),
                key=slack)
    rows.append((f"weight gradients (worst: cairn's {worst[2]})", worst[0], worst[1]))
    # batch norm's running statistics after the pass, per tensor: a small group's variance
    # must not hide among the others
    ref, got, at, stats = forward_stats(net64), load("stats.bin").double(), 0, []
    if got.numel() != sum(t.numel() for t in ref):
        raise SystemExit(f"check {spec}: stats.bin holds {got.numel()} values, the mirror's batch norms "
                         f"{sum(t.numel() for t in ref)}: not the same network")
    for t, t32 in zip(ref, stats32):
        stats.append((err(got[at:at + t.numel()], t.reshape(-1)), err(t32.reshape(-1), t.reshape(-1))))
        at += t.numel()
    if stats:
        rows.append(("batch norm running statistics", *max(stats, key=slack)))
    # evaluation mode after the pass: batch norm with the running statistics each side has
    # just updated, the ReLUs on cairn's side (eval-masks.bin)
    em = load("eval-masks.bin", torch.bool)
    with torch.no_grad():
        e32 = mirror_forward(net.eval(), x, em, spec, bf16).reshape(-1)
        e64 = mirror_forward(net64.eval(), x.double(), em, spec, False).reshape(-1)
    rows.append(("evaluation output", err(load("eval.bin"), e64), err(e32, e64)))
    loss_row = check_losses(a, d, load, cairn[0].double().view(batch, oc, oh, ow), 1e-5)
    spans, at = [], 0
    for p in params:
        spans.append((p, at, p.numel()))
        at += p.numel()
    decay = [m[6] == "1" for m in meta if m[0] == "param"]
    opt_row = check_optim(d, load, spans, decay, flat, cg, 1e-4)
    ok = all(slack(r[1:]) <= 1 for r in rows) and loss_row[1] and opt_row[1]
    print(f"torch check [{os.path.basename(os.path.normpath(a.check))}] {spec} {prec} batch {batch} {c}x{h}x{w}: {len(params)} tensors, {sum(ours)} parameters; "
          f"error against float64, cairn (PyTorch {'bf16 autocast' if bf16 else 'float32'}): " +
          ", ".join(f"{w_} {ec:.1e} ({et:.1e})" for w_, ec, et in rows) +
          f"; bound max({tol:g}, {factor:g} x PyTorch's); {loss_row[0]}; {opt_row[0]}: {'ok' if ok else 'FAILED'}")
    if not ok:
        raise SystemExit(1)


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
        load_weights(ps, w)
        before.append(w)
    reals = [load("real_A.bin").view(batch, 3, size, size), load("real_B.bin").view(batch, 3, size, size)]
    parts = []
    a.precision = "fp32"
    masks = torch.from_file(d("masks.bin"), size=os.path.getsize(d("masks.bin")), dtype=torch.bool)
    torch_nets.MASKS = m = Masks(masks)  # every ReLU on cairn's side of its kink, as in check
    try:
        cyclegan_step_fn(a, torch.device("cpu"), nets, reals, parts)()
        if m.at != masks.numel():
            raise SystemExit(f"check-cyclegan: the reference step used {m.at} of cairn's {masks.numel()} "
                             "ReLU outputs: not the same step")
    finally:
        torch_nets.MASKS = None
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
