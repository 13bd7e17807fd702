"""The critic study on sklearn digits / MNIST behind docs/dmmd-what-we-learned.md (standalone re-implementation).

Usage: python benchmarks/research/dmmd_critic_images.py v=lin|resrbf ds=digits iters=1000 [fixw=1] [norm=1] ...
Prints one JSON line: mean classifier confidence on samples (and on real test images), class histogram, fixed-kernel
MMD^2 to test images, median nearest-neighbour distance to the training set (below the real images' value means
copying), and writes a sample grid PNG.
"""
import math, sys, time, json
import numpy as np, torch, torch.nn as nn, torch.nn.functional as Fn
torch.set_num_threads(int(dict(a.split("=") for a in sys.argv[1:]).get("threads", 1)))
args = dict(a.split("=") for a in sys.argv[1:])
V = args.get("v", "resrbf"); DS = args.get("ds", "digits")
ITERS = int(args.get("iters", 1000)); D = int(args.get("D", 64)); G = int(args.get("G", 4)); NB = int(args.get("n", 64))
LGP = float(args.get("gp", 1.0)); L2 = float(args.get("l2", 0.1)); LR = float(args.get("lr", 1e-3)); POW = float(args.get("pow", 2))
ETA = float(args.get("eta", 1)); BETA = float(args.get("beta", 0.0)); T = int(args.get("T", 50)); NS = int(args.get("Ns", 5))
SEED = int(args.get("seed", 0)); NREF = int(args.get("nref", 1000)); HC = float(args.get("hc", 1.0)); HMIN = float(args.get("hmin", 0.1))
NP = int(args.get("np", 500)); OUT = args.get("out", f"img_{V}_{DS}_{ITERS}")
torch.manual_seed(SEED); rng = np.random.default_rng(SEED)
if DS == "digits":
    from sklearn.datasets import load_digits
    b = load_digits(); X = torch.tensor(b.images / 16.0 * 2 - 1, dtype=torch.float32).reshape(-1, 64); Y = b.target
    perm = rng.permutation(len(X)); te, tr = perm[:297], perm[297:]
else:
    import gzip
    raw = np.fromfile(args.get("root", "../shared/data") + "/MNIST/raw/train-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 784)
    X = torch.tensor(raw / 255.0 * 2 - 1, dtype=torch.float32); Y = np.fromfile(args.get("root", "../shared/data") + "/MNIST/raw/train-labels-idx1-ubyte", dtype=np.uint8, offset=8)
    perm = rng.permutation(len(X)); te, tr = perm[:2000], perm[2000:]
Xtr, Xte, Ytr, Yte = X[tr], X[te], Y[tr], Y[te]
d = X.shape[1]
def data(n): return Xtr[torch.from_numpy(rng.integers(len(Xtr), size=n))]
S = 0.008
def abar(t): return (torch.cos((t + S) / (1 + S) * math.pi / 2) ** 2 / math.cos(S / (1 + S) * math.pi / 2) ** 2).clamp(1e-5, 1)
def al(t): return abar(t).sqrt()
def si(t): return (1 - abar(t)).sqrt()
TMIN = 1e-3
def temb(t, k=16):
    f = torch.exp(torch.linspace(0, math.log(1000), k // 2)); a = t[:, None] * f[None]
    return torch.cat([a.sin(), a.cos()], 1)
class Net(nn.Module):
    def __init__(s):
        super().__init__()
        H = 256
        s.inp = nn.Linear(d + 16, H); s.h = nn.Sequential(nn.SiLU(), nn.Linear(H, H), nn.SiLU(), nn.Linear(H, H), nn.SiLU(), nn.Linear(H, D))
        s.logh = nn.Sequential(nn.Linear(16, 64), nn.SiLU(), nn.Linear(64, 1))
        if V == "resrbf":
            nn.init.zeros_(s.h[-1].weight); nn.init.zeros_(s.h[-1].bias)
        nn.init.zeros_(s.logh[-1].weight); nn.init.zeros_(s.logh[-1].bias)
    def width(s, t):
        base = torch.log(torch.clamp(HC * si(t) * math.sqrt(d), min=HMIN * math.sqrt(d)))
        return torch.exp(base + (0 if args.get('fixw') else s.logh(temb(t)).squeeze(-1)))
    def forward(s, x, t):
        h = s.h(s.inp(torch.cat([x, temb(t)], 1)))
        return torch.cat([x, h], 1) if V == "resrbf" else h
def kern(a, b, h):
    dd = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return torch.exp(-dd.clamp_min(0) / (2 * h * h))
def mmd_u(fx, fy, h):
    n, m = len(fx), len(fy)
    if V == "lin":
        sx, sy = fx.sum(0), fy.sum(0); qx, qy = (fx * fx).sum(), (fy * fy).sum()
        return (sx @ sx - qx) / (n * (n - 1)) + (sy @ sy - qy) / (m * (m - 1)) - 2 * sx @ sy / (n * m)
    kxx, kyy, kxy = kern(fx, fx, h), kern(fy, fy, h), kern(fx, fy, h)
    return (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean()
def wit(fz, fx, fy, h):
    if V == "lin": return fz @ (fx.mean(0) - fy.mean(0))
    return kern(fz, fx, h).mean(1) - kern(fz, fy, h).mean(1)
net = Net(); opt = torch.optim.Adam(net.parameters(), lr=LR)
ema = [p.detach().clone() for p in net.parameters()]
t0 = time.time(); log = []
for it in range(ITERS):
    loss = 0; mm = 0; gn = 0
    for gi in range(G):
        t = TMIN + (1 - TMIN) * torch.rand(()) ** POW
        x = data(NB); x2 = data(NB); y = al(t) * x2 + si(t) * torch.randn_like(x2); tt = t.expand(NB)
        h = net.width(t[None])[0]
        u = torch.rand(NB, 1); xh = (u * x + (1 - u) * y).requires_grad_(True)
        fx, fy = net(x, tt), net(y, tt)
        m2 = mmd_u(fx, fy, h); f = wit(net(xh, tt), fx, fy, h)
        gr = torch.autograd.grad(f.sum(), xh, create_graph=True)[0]
        gp = (((gr.norm(dim=1) - 1).clamp_min(0) if args.get('gp1') else (gr.norm(dim=1) - 1)) ** 2).mean()
        l2 = torch.cat([wit(fx, fx, fy, h), wit(fy, fx, fy, h)]).pow(2).mean()
        loss = loss + (-m2 + LGP * gp + L2 * l2) / G; mm += m2.item() / G; gn += gr.norm(dim=1).mean().item() / G
    opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        for e, p in zip(ema, net.parameters()): e.mul_(0.998).add_(p, alpha=0.002)
    if it % 200 == 0: log.append((it, round(mm, 4), round(gn, 3)))
ttrain = time.time() - t0
if ITERS:
    with torch.no_grad():
        for e, p in zip(ema, net.parameters()): p.copy_(e)
grid = torch.linspace(1, TMIN, T); xref = data(NREF)
gen = torch.Generator().manual_seed(1); Z = torch.randn(NP, d, generator=gen)
t1 = time.time()
for k in range(T):
    t = grid[k]; tt = t.expand(NP); h = net.width(t[None])[0].detach()
    with torch.no_grad(): fX = net(xref, t.expand(NREF)); mP = fX.mean(0)
    for s in range(NS):
        zp = (Z + BETA * si(t) * torch.randn(Z.shape, generator=gen)).requires_grad_(True)
        fz = net(zp, tt)
        if V == "lin":
            F = fz @ (mP - fz.detach().mean(0)); eta = ETA * si(t)
        else:
            kd = kern(fz, fX, h).mean(1)
            F = kd - kern(fz, fz.detach(), h).mean(1); eta = ETA * h * h
            if args.get('norm'):
                eta = eta / (kd.detach() + float(args.get('eps', 1e-3)))[:, None]
        gz = torch.autograd.grad(F.sum(), zp)[0]
        Z = (Z + eta * gz).detach()
tsamp = time.time() - t1
Zc = Z.clamp(-1, 1)
# metrics: classifier on train, nn distance, fixed-kernel MMD vs test
from sklearn.neural_network import MLPClassifier
clf = MLPClassifier((128,), max_iter=300, random_state=0).fit(Xtr.numpy(), Ytr)
acc = clf.score(Xte.numpy(), Yte)
pr = clf.predict_proba(Zc.numpy()); conf = pr.max(1); cls = np.bincount(pr.argmax(1), minlength=10)
prr = clf.predict_proba(Xte.numpy()[:NP]).max(1)
def mmdfix(a, b):
    h2 = torch.tensor(float(d))  # width^2 = d (pixels in [-1,1])
    K = lambda p, q: torch.exp(-((p * p).sum(1)[:, None] + (q * q).sum(1)[None] - 2 * p @ q.T).clamp_min(0) / (2 * h2))
    n, m = len(a), len(b); kxx, kyy, kxy = K(a, a), K(b, b), K(a, b)
    return float((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.mean())
nn_d = torch.cdist(Zc, Xtr).min(1).values.median().item(); nn_real = torch.cdist(Xte[:NP], Xtr).min(1).values.median().item()
res = dict(v=V, ds=DS, iters=ITERS, conf=round(float(conf.mean()), 3), conf_real=round(float(prr.mean()), 3), clf_acc=round(acc, 3), classes=cls.tolist(),
           mmd=round(mmdfix(Zc, Xte[:NP]), 5), mmd_real=round(mmdfix(Xte[:NP], Xtr[:NP]), 5), nn=round(nn_d, 3), nn_real=round(nn_real, 3), oor=round(float((Z.abs() > 1.05).float().mean()), 3),
           ttrain=round(ttrain, 1), tsamp=round(tsamp, 1), log=log, args=args)
print(json.dumps(res))
side = int(math.sqrt(d))
from gflowzoo.viz import save_image_grid
save_image_grid((Zc[:64].reshape(64, 1, side, side) + 1) / 2, f"{OUT}.png", nrow=8)
