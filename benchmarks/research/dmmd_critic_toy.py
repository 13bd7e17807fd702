"""The critic study on toy-25gaussians behind docs/dmmd-what-we-learned.md (a standalone re-implementation, kept
so that the study's figures can be reproduced; the product code is the gflowzoo-dmmd plugin).

Usage: python benchmarks/research/dmmd_critic_toy.py v=lin|resrbf|rfflin iters=2000 [fixw=1] [gp1=1] [lr=...] ...
Prints one JSON line: modes covered (of 25, >= 20 samples within 3 std), fraction within 3 std, timings.
"""
import math, sys, time, json
import numpy as np, torch, torch.nn as nn
torch.set_num_threads(1)
args = dict(a.split("=") for a in sys.argv[1:])
V = args.get("v", "resrbf")          # lin | rbf | resrbf
ITERS = int(args.get("iters", 2000)); D = int(args.get("D", 64)); G = int(args.get("G", 8)); NB = int(args.get("n", 128))
LGP = float(args.get("gp", 1.0)); L2 = float(args.get("l2", 0.1)); LR = float(args.get("lr", 1e-3)); POW = float(args.get("pow", 2))
ETA = float(args.get("eta", 10)); BETA = float(args.get("beta", 0.5)); T = int(args.get("T", 50)); NS = int(args.get("Ns", 5))
SEED = int(args.get("seed", 0)); NREF = int(args.get("nref", 1024)); W = float(args.get("wt", 0))
torch.manual_seed(SEED); rng = np.random.default_rng(SEED)
g = np.arange(-4., 5., 2.); C = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2); STD = 0.05; SC = math.sqrt(8)
def data(n):
    return torch.tensor(C[rng.integers(25, size=n)] + STD * rng.standard_normal((n, 2)), dtype=torch.float32) / SC
S = 0.008
def abar(t): return (torch.cos((t + S) / (1 + S) * math.pi / 2) ** 2 / math.cos(S / (1 + S) * math.pi / 2) ** 2).clamp(1e-5, 1)
def al(t): return abar(t).sqrt()
def si(t): return (1 - abar(t)).sqrt()
TMIN = 1e-3
def temb(t, k=16):
    f = torch.exp(torch.linspace(0, math.log(1000), k // 2))
    a = t[:, None] * f[None]
    return torch.cat([a.sin(), a.cos()], 1)
class Net(nn.Module):
    def __init__(s):
        super().__init__()
        s.inp = nn.Linear(2 + 16, 128); s.h = nn.Sequential(nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, D))
        s.logh = nn.Sequential(nn.Linear(16, 64), nn.SiLU(), nn.Linear(64, 1))
        if V in ("resrbf", "rfflin"):
            nn.init.zeros_(s.h[-1].weight); nn.init.zeros_(s.h[-1].bias)
        if V == "rfflin":
            s.register_buffer("W", torch.randn(2, 2048)); s.register_buffer("b", torch.rand(2048) * 2 * math.pi)
            nn.init.zeros_(s.logh[-1].weight); nn.init.zeros_(s.logh[-1].bias)
    def width(s, t):  # learned width; init ~ max(sigma_t, 0.05)
        base = torch.log(torch.clamp(si(t), min=float(args.get('hmin', 0.05))))
        return torch.exp(base + (0 if args.get('fixw') else s.logh(temb(t)).squeeze(-1)))
    def forward(s, x, t):
        h = s.h(s.inp(torch.cat([x, temb(t)], 1)))
        if V == "resrbf":
            return torch.cat([x, h], 1)
        if V == "rfflin":
            w = s.width(t)[:, None]
            return torch.cat([math.sqrt(2 / 2048) * torch.cos(x @ s.W / w + s.b), h], 1)
        return h
def kern(a, b, h):  # rbf with width h (scalar tensor)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return torch.exp(-d.clamp_min(0) / (2 * h * h))
def mmd_u(fx, fy, h):
    n, m = len(fx), len(fy)
    if V in ("lin", "rfflin"):
        sx, sy = fx.sum(0), fy.sum(0); qx, qy = (fx * fx).sum(), (fy * fy).sum()
        return (sx @ sx - qx) / (n * (n - 1)) + (sy @ sy - qy) / (m * (m - 1)) - 2 * sx @ sy / (n * m)
    kxx, kyy, kxy = kern(fx, fx, h), kern(fy, fy, h), kern(fx, fy, h)
    return (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean()
def wit(fz, fx, fy, h):
    if V in ("lin", "rfflin"):
        return fz @ (fx.mean(0) - fy.mean(0))
    return kern(fz, fx, h).mean(1) - kern(fz, fy, h).mean(1)
net = Net(); opt = torch.optim.Adam(net.parameters(), lr=LR, betas=(0.9, 0.999))
ema = [p.detach().clone() for p in net.parameters()]
t0 = time.time(); log = []
for it in range(ITERS):
    loss = 0; mm = 0; gn = 0
    for gi in range(G):
        t = TMIN + (1 - TMIN) * torch.rand(()) ** POW
        x = data(NB); x2 = data(NB); y = al(t) * x2 + si(t) * torch.randn_like(x2)
        tt = t.expand(NB)
        h = net.width(t[None])[0]
        u = torch.rand(NB, 1); xh = (u * x + (1 - u) * y).requires_grad_(True)
        fx, fy = net(x, tt), net(y, tt)
        m2 = mmd_u(fx, fy, h)
        f = wit(net(xh, tt), fx, fy, h)
        gr = torch.autograd.grad(f.sum(), xh, create_graph=True)[0]
        gp = (((gr.norm(dim=1) - 1).clamp_min(0) if args.get('gp1') else (gr.norm(dim=1) - 1)) ** 2).mean()
        l2 = torch.cat([wit(fx, fx, fy, h), wit(fy, fx, fy, h)]).pow(2).mean()
        w = 1.0 / si(t).clamp_min(0.05) if W else 1.0
        loss = loss + w * (-m2 + LGP * gp + L2 * l2) / G; mm += m2.item() / G; gn += gr.norm(dim=1).mean().item() / G
    opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        for e, p in zip(ema, net.parameters()): e.mul_(0.995).add_(p, alpha=0.005)
    if it % 250 == 0: log.append((it, round(mm, 4), round(gn, 3)))
ttrain = time.time() - t0
with torch.no_grad():
    for e, p in zip(ema, net.parameters()): p.copy_(e)
# sampling: exact DMMD
N = 2500
grid = torch.linspace(1, TMIN, T)
xref = data(NREF)
Z = torch.randn(N, 2)
gen = torch.Generator().manual_seed(1)
t1 = time.time()
for k in range(T):
    t = grid[k]; tt = t.expand(N); h = net.width(t[None])[0].detach()
    with torch.no_grad():
        fX = net(xref, t.expand(NREF)); mP = fX.mean(0)
    for s in range(NS):
        zp = (Z + BETA * si(t) * torch.randn(Z.shape, generator=gen)).requires_grad_(True)
        fz = net(zp, tt)
        if V in ("lin", "rfflin"):
            F = fz @ (mP - fz.detach().mean(0))
            eta = ETA * si(t).clamp_min(0.05)
        else:
            F = kern(fz, fX, h).mean(1) - kern(fz, fz.detach(), h).mean(1)
            eta = ETA * h * h
        gz = torch.autograd.grad(F.sum(), zp)[0]
        Z = (Z + eta * gz * N / N).detach()
tsamp = time.time() - t1
raw = Z.numpy() * SC
d = np.sqrt(((raw[:, None] - C[None]) ** 2).sum(-1)); near = d.argmin(1); hq = d.min(1) < 3 * STD
cnt = np.bincount(near[hq], minlength=25)
res = dict(v=V, iters=ITERS, modes=int((cnt >= 20).sum()), hq=round(float(hq.mean()), 3), ttrain=round(ttrain, 1), tsamp=round(tsamp, 1), log=log, args=args)
print(json.dumps(res))
