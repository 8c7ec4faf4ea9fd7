#!/usr/bin/env python3
# A pure-PyTorch CPU implementation of the training that bench/train.ts measures, as the outside
# reference for `bun run bench:train`: hash grid (tiny-cuda-nn's indexing: per level a scale,
# floor(x * scale + 0.5) cells, dense index where the level's grid fits its table, the
# coherent-prime hash where it does not) -> MLP (ReLU, no biases) -> loss -> backward (autograd)
# -> Adam over the encoding and the network (two groups, constant learning rate) -> optionally an
# EMA of all parameters. Two peers, chosen by the config:
#   - the bilinear peer: targets the image bilinearly interpolated at uniform random points,
#     relative L2 (the prediction in the denominator held constant, as tiny-cuda-nn), EMA;
#   - the naive loop a user would write: random pixel centres and their stored values, plain L2,
#     no EMA.
# It trains for the wall-clock budgets given and reports the full-image PSNR (all pixel centres,
# the EMA's weights when it keeps one) at each, the clock stopped while it evaluates.
#
# Not a project dependency: bench/train.ts runs it only when `import torch` works. The level
# tables come from bench/train.ts (modules/hashgrid.ts derives them), so both sides train the
# same model:
#
#   python3 bench/torch_train.py CONFIG.json
#
# CONFIG.json: {"image": raw samples file (u8 or u16, row-major y, x, channel), "width", "height",
#   "channels", "bits", "dims": 2, "levels", "features", "scale": [l * dims + d], "stride": [...],
#   "size": [l], "offset": [l], "hashed": [l], "width_mlp", "hidden_layers", "batch", "lr", "beta1",
#   "beta2", "eps", "ema_decay", "threads", "seed", "sampling": "bilinear" | "pixel",
#   "loss": "relative_l2" | "l2", "ema": bool, "seconds": [budgets]}
# Prints one JSON line: "budgets": [{"seconds", "steps", "psnr"}], "steps_per_s", "torch",
# "threads", "params".
import json
import math
import sys
import time

import torch

PRIMES = (1, 2654435761, 805459861)


class HashGrid(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.D, self.L, self.F = c["dims"], c["levels"], c["features"]
        entries = c["offset"][-1] + c["size"][-1]
        self.table = torch.nn.Parameter(torch.empty(entries, self.F).uniform_(-1e-4, 1e-4))
        self.scale = torch.tensor(c["scale"], dtype=torch.float32).view(self.L, self.D)
        self.stride = [[int(s) for s in c["stride"][l * self.D:(l + 1) * self.D]] for l in range(self.L)]
        self.size, self.offset, self.hashed = c["size"], c["offset"], c["hashed"]

    def forward(self, x):  # x: [n, D] in [0, 1]
        outs = []
        for l in range(self.L):
            pos = x * self.scale[l] + 0.5
            cell = torch.floor(pos)
            frac = pos - cell
            cell = cell.to(torch.int64)
            feat = 0
            for corner in range(1 << self.D):
                idx = torch.zeros(x.shape[0], dtype=torch.int64)
                w = torch.ones(x.shape[0])
                for d in range(self.D):
                    up = (corner >> d) & 1
                    cd = cell[:, d] + up
                    w = w * (frac[:, d] if up else 1 - frac[:, d])
                    if self.hashed[l]:
                        idx = idx ^ ((cd * PRIMES[d]) & 0xFFFFFFFF)
                    else:
                        idx = idx + cd * self.stride[l][d]
                idx = (idx & 0xFFFFFFFF) % self.size[l] + self.offset[l]
                feat = feat + w[:, None] * self.table[idx]
            outs.append(feat)
        return torch.cat(outs, dim=1)


def main():
    c = json.load(open(sys.argv[1]))
    torch.set_num_threads(int(c.get("threads", 2)))
    torch.manual_seed(int(c.get("seed", 1337)))
    H, W, C = c["height"], c["width"], c["channels"]
    raw = open(c["image"], "rb").read()
    dtype, top = (torch.uint8, 255.0) if c["bits"] == 8 else (torch.int16, 65535.0)
    img = torch.frombuffer(bytearray(raw), dtype=dtype)[: H * W * C].to(torch.int32)
    if c["bits"] == 16:
        img = img & 0xFFFF
    img = (img.to(torch.float32) / top).view(H, W, C)

    grid = HashGrid(c)
    layers, fan_in = [], c["levels"] * c["features"]
    for _ in range(c["hidden_layers"]):
        layers += [torch.nn.Linear(fan_in, c["width_mlp"], bias=False), torch.nn.ReLU()]
        fan_in = c["width_mlp"]
    layers.append(torch.nn.Linear(fan_in, C, bias=False))
    mlp = torch.nn.Sequential(*layers)
    betas, eps = (c["beta1"], c["beta2"]), c["eps"]
    opt = torch.optim.Adam([{"params": grid.parameters()}, {"params": mlp.parameters()}], lr=c["lr"], betas=betas, eps=eps)
    params = list(grid.parameters()) + list(mlp.parameters())
    pixel = c.get("sampling", "bilinear") == "pixel"
    relative = c.get("loss", "relative_l2") == "relative_l2"
    ema = [p.detach().clone() for p in params] if c.get("ema", True) else []  # empty: no EMA

    def sample(n):
        if pixel:  # uniform over the pixel centres, their stored values
            xi, yi = torch.randint(0, W, (n,)), torch.randint(0, H, (n,))
            return torch.stack(((xi + 0.5) / W, (yi + 0.5) / H), dim=1), img[yi, xi]
        # Pixel x covers [x, x + 1) / W: bilinear between the centres, clamped at the borders.
        uv = torch.rand(n, 2)
        px = (uv[:, 0] * W - 0.5).clamp(0, W - 1)
        py = (uv[:, 1] * H - 0.5).clamp(0, H - 1)
        x0, y0 = px.floor().long(), py.floor().long()
        x1, y1 = (x0 + 1).clamp(max=W - 1), (y0 + 1).clamp(max=H - 1)
        fx, fy = (px - x0)[:, None], (py - y0)[:, None]
        t = (img[y0, x0] * (1 - fx) + img[y0, x1] * fx) * (1 - fy) + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy
        return uv, t

    @torch.no_grad()
    def psnr():
        # The full image at its pixel centres, on the EMA's weights when one is kept.
        saved = [p.detach().clone() for p in params] if ema else []
        for p, e in zip(params, ema):
            p.copy_(e)
        se = 0.0
        xs = (torch.arange(W, dtype=torch.float32) + 0.5) / W
        for y0 in range(0, H, 64):
            ys = (torch.arange(y0, min(H, y0 + 64), dtype=torch.float32) + 0.5) / H
            uv = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
            se += float(((mlp(grid(uv)) - img[y0:y0 + len(ys)].reshape(-1, C)) ** 2).double().sum())
        for p, s in zip(params, saved):
            p.copy_(s)
        mse = se / (H * W * C)
        return 10 * math.log10(1 / mse) if mse > 0 else float("inf")

    def step(k):
        x, target = sample(c["batch"])
        pred = mlp(grid(x))
        if relative:
            loss = ((pred - target) ** 2 / (pred.detach() ** 2 + 0.01)).mean()
        else:
            loss = ((pred - target) ** 2).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        if ema:
            with torch.no_grad():
                decay = min(c["ema_decay"], (2 + k) / (11 + k))
                torch._foreach_mul_(ema, decay)
                torch._foreach_add_(ema, params, alpha=1 - decay)

    budgets, out, k, clock = sorted(c["seconds"]), [], 0, 0.0
    for b in budgets:
        while clock < b:
            t0 = time.perf_counter()
            step(k)
            k += 1
            clock += time.perf_counter() - t0
        out.append({"seconds": clock, "steps": k, "psnr": psnr()})
    print(json.dumps({"budgets": out, "steps_per_s": k / clock, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "params": sum(p.numel() for p in params)}))


if __name__ == "__main__":
    main()
