#!/usr/bin/env python3
# bench/torch_nets.py: PyTorch mirrors of cairn's networks (nn/model.c), built
# from the same spec strings (build_net), and the reference CycleGAN step of
# Zhu et al. (cyclegan_step_fn). bench/cuda_torch.py times them beside
# bench/cuda_step; bench/torch_check.py checks that they compute what cairn's
# nets compute; bench/torch_classifier.py trains one. Parameters come out in
# the order cairn creates them (forward_params), so a cairn dump loads one
# for one.
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
    last = getattr(a, "channels_last", False)  # PyTorch's faster layout for tensor cores
    if last:
        ga, gb, da, db = (m.to(memory_format=torch.channels_last) for m in (ga, gb, da, db))
    og = torch.optim.Adam(list(ga.parameters()) + list(gb.parameters()), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(list(da.parameters()) + list(db.parameters()), lr=2e-4, betas=(0.5, 0.999))
    real_a, real_b = reals or (torch.rand(a.batch, 3, a.size, a.size, device=dev) * 2 - 1,
                               torch.rand(a.batch, 3, a.size, a.size, device=dev) * 2 - 1)
    if last:
        real_a, real_b = (r.to(memory_format=torch.channels_last) for r in (real_a, real_b))
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
