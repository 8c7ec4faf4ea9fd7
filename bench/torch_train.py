#!/usr/bin/env python3
# A pure-PyTorch CPU implementation of the training step that bench/train.ts measures, as the
# outside reference for `bun run bench:train`: hash grid (tiny-cuda-nn's indexing: per level a
# scale, floor(x * scale + 0.5) cells, dense index where the level's grid fits its table, the
# coherent-prime hash where it does not) -> MLP (ReLU, no biases) -> relative L2 loss (the
# prediction in the denominator held constant, as tiny-cuda-nn) -> backward (autograd) -> Adam over
# the encoding and the network (two groups) -> EMA of all parameters. Training targets are the
# image bilinearly interpolated at uniform random points, as the project's sampler does.
#
# Not a project dependency: bench/train.ts runs it only when `import torch` works. The level
# tables come from bench/train.ts (modules/hashgrid.ts derives them), so both sides train the
# same model:
#
#   python3 bench/torch_train.py CONFIG.json
#
# CONFIG.json: {"image": raw samples file (u8 or u16, row-major y, x, channel), "width", "height",
#   "channels", "bits", "dims": 2, "levels", "features", "scale": [l * dims + d], "stride": [...],
#   "size": [l], "offset": [l], "hashed": [l], "width_mlp", "hidden_layers", "batch", "steps",
#   "warmup", "lr", "beta1", "beta2", "eps", "ema_decay", "threads", "seed"}
# Prints one JSON line: steps timed, median and mean seconds per step, steps/s, last loss.
import json
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
    ema = [p.detach().clone() for p in params]

    def sample(n):
        # Pixel x covers [x, x + 1) / W: bilinear between the centres, clamped at the borders.
        uv = torch.rand(n, 2)
        px = (uv[:, 0] * W - 0.5).clamp(0, W - 1)
        py = (uv[:, 1] * H - 0.5).clamp(0, H - 1)
        x0, y0 = px.floor().long(), py.floor().long()
        x1, y1 = (x0 + 1).clamp(max=W - 1), (y0 + 1).clamp(max=H - 1)
        fx, fy = (px - x0)[:, None], (py - y0)[:, None]
        t = (img[y0, x0] * (1 - fx) + img[y0, x1] * fx) * (1 - fy) + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy
        return uv, t

    times, loss_value = [], float("nan")
    for step in range(c["warmup"] + c["steps"]):
        t0 = time.perf_counter()
        x, target = sample(c["batch"])
        pred = mlp(grid(x))
        loss = ((pred - target) ** 2 / (pred.detach() ** 2 + 0.01)).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(c["ema_decay"], (2 + step) / (11 + step))
            torch._foreach_mul_(ema, decay)
            torch._foreach_add_(ema, params, alpha=1 - decay)
        loss_value = loss.item()
        if step >= c["warmup"]:
            times.append(time.perf_counter() - t0)
    s = sorted(times)
    med = s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
    print(json.dumps({
        "steps": len(times), "median_s": med, "mean_s": sum(times) / len(times), "steps_per_s": 1 / med,
        "loss": loss_value, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in params),
    }))


if __name__ == "__main__":
    main()
