#!/usr/bin/python3
"""PyTorch peer for bench/bench_norms: times forward and forward+backward of LayerNorm, RMSNorm,
DyT and Derf (eager, float32) on an N x C tensor, median of R runs, and prints one line per norm:
    name fwd_ms fwdbwd_ms
Usage: /usr/bin/python3 tools/bench_torch_norms.py N C R THREADS"""
import sys, time, torch

N, C, R, TH = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(TH)
torch.manual_seed(0)
x = torch.randn(N, C, requires_grad=True)
dy = torch.randn(N, C)
g = torch.ones(C, requires_grad=True); b = torch.zeros(C, requires_grad=True)
alpha = torch.full((1,), 0.5, requires_grad=True); s = torch.zeros(1, requires_grad=True)

def rms(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g

layers = {
    "layernorm": lambda x: torch.nn.functional.layer_norm(x, (C,), g, b, 1e-5),
    "rmsnorm": rms,
    "dyt": lambda x: g * torch.tanh(alpha * x) + b,
    "derf": lambda x: g * torch.erf(alpha * x + s) + b,
}

def median_ms(fn):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(R):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    ts.sort()
    return 1e3 * ts[len(ts) // 2]

for name, f in layers.items():
    def fwd():
        with torch.no_grad():
            f(x)
    def fb():
        y = f(x)
        y.backward(dy)
    print(name, "%.4f" % median_ms(fwd), "%.4f" % median_ms(fb), flush=True)
