#!/usr/bin/python3
"""bench_torch.py: the PyTorch peers of `derf bench` (src/cli/cmd_bench.c), which runs this script in the
same invocation with the same sizes and prints the ratios. Eager PyTorch, float32, CPU.

Usage (derf bench builds these command lines; the norm specs are derf's canonical spec strings):
  bench_torch.py norms --rows N --cols C        COMMON SPEC...   forward, forward+backward of one norm layer
  bench_torch.py vit   --batch B --img I --chans K --patch P --dim D --depth L --heads H --mlp-ratio M
                       --classes V --pool avg|cls --gelu erf|tanh  COMMON SPEC...   one ViT training step
  bench_torch.py gpt2  --batch B --seq T --vocab V --block-size S --n-layer L --n-head H --n-embd C
                       --bias 0|1                 COMMON SPEC...   one GPT-2 training step
  COMMON: --reps R --warmup W --threads N [--min]   (median of R timed runs after W untimed ones,
          or their minimum with --min; torch.set_num_threads(N))

The models are the parity oracles' (tools/vit_torch_parity.py, tools/gpt2_torch_parity.py: the same
architecture derf trains), except that LayerNorm is torch's fused nn.LayerNorm, what a PyTorch user
would run. Steps match derf bench's: ViT = forward + cross-entropy (label smoothing 0.1) + backward +
AdamW (lr 4e-3, wd 0.05); GPT-2 = forward + cross-entropy + backward + clip_grad_norm_(1.0) + AdamW
(lr 6e-4, betas 0.9/0.95, wd 0.1 on the >= 2-D tensors). The caller sets OPENBLAS_NUM_THREADS in the
environment (docs/performance.md explains the choice).

Output on stdout: 'torch VERSION', then one line per SPEC in the order given, 'r INDEX MS [MS2]'
(norms: forward ms, forward+backward ms; vit and gpt2: ms per step), with '-' for a spec these oracles
cannot build (e.g. one with transforms). Progress goes to stderr. Without torch: one line
'notorch REASON' and exit status 3.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 (any import failure means: no peer)
    print("notorch", str(e).replace("\n", " "), flush=True)
    sys.exit(3)

import vit_torch_parity as vp  # noqa: E402
import gpt2_torch_parity as gp  # noqa: E402

_oracle_make_norm = vp.make_norm


def make_norm(spec, C):
    """The oracles' norm layers, but LayerNorm is torch's fused kernel (the fair peer)."""
    if spec["kind"] == "layernorm" and spec["affine"] and spec["bias"]:
        return nn.LayerNorm(C, eps=spec["eps"])
    return _oracle_make_norm(spec, C)


vp.make_norm = make_norm  # the ViT and GPT-2 blocks look the name up at build time
gp.make_norm = make_norm


def parse(text):
    """The oracle's spec parser; None for a spec it does not support (it exits on those)."""
    try:
        return vp.parse_norm(text)
    except SystemExit:
        return None


STAT_MIN = False  # --min: the fastest timed run instead of the median (as derf bench --min)


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    n = len(ts)
    if STAT_MIN:
        return 1e3 * ts[0]
    return 1e3 * (ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2]))


def adamw(model, lr, betas, wd):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": nodecay, "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=1e-8)


def bench_norms(a, spec, text):
    torch.manual_seed(0)
    x = (torch.rand(a.rows, a.cols) * 4 - 2).requires_grad_(True)
    dy = torch.rand(a.rows, a.cols) - 0.5
    layer = make_norm(spec, a.cols)

    def fwd():
        with torch.no_grad():
            layer(x)

    def fwd_bwd():  # x.grad accumulates, like derf's backward adding into dx
        layer(x).backward(dy)

    f = median_ms(fwd, a.warmup, a.reps)
    fb = median_ms(fwd_bwd, a.warmup, a.reps)
    print(f"[torch] norm {text} {a.rows} x {a.cols}: forward {f:.3f} ms, forward+backward {fb:.3f} ms", file=sys.stderr)
    return [f, fb]


def bench_vit(a, spec, text):
    torch.manual_seed(0)
    cfg = {"img": a.img, "chans": a.chans, "patch": a.patch, "dim": a.dim, "depth": a.depth, "heads": a.heads,
           "mlp_ratio": a.mlp_ratio, "classes": a.classes, "pool": a.pool, "gelu": a.gelu, "norm": spec}
    model = vp.ViT(cfg)
    model.train()
    opt = adamw(model, 4e-3, (0.9, 0.999), 0.05)
    images = torch.randn(a.batch, a.chans, a.img, a.img)
    labels = torch.randint(0, a.classes, (a.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        loss.backward()
        opt.step()

    ms = median_ms(step, a.warmup, a.reps)
    print(f"[torch] vit {text} batch {a.batch}: {ms:.2f} ms/step, {a.batch / ms * 1e3:.0f} images/s", file=sys.stderr)
    return [ms]


def bench_gpt2(a, spec, text):
    torch.manual_seed(0)
    cfg = {"vocab": a.vocab, "block_size": a.block_size, "n_layer": a.n_layer, "n_head": a.n_head,
           "n_embd": a.n_embd, "bias": bool(a.bias), "shared_scale": spec["kind"] == "pointwise", "norm": spec}
    model = gp.GPT(cfg)
    model.train()
    opt = adamw(model, 6e-4, (0.9, 0.95), 0.1)
    vmax = 50257 if a.vocab == 50304 else a.vocab  # GPT-2's padded rows are never tokens
    tokens = torch.randint(0, vmax, (a.batch, a.seq))
    targets = torch.randint(0, vmax, (a.batch, a.seq))
    params = list(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    ms = median_ms(step, a.warmup, a.reps)
    print(f"[torch] gpt2 {text} B {a.batch} T {a.seq}: {ms:.1f} ms/step", file=sys.stderr)
    return [ms]


def main():
    ap = argparse.ArgumentParser(description="PyTorch peers of derf bench")
    sub = ap.add_subparsers(dest="part", required=True)
    parts = {}
    for name, fn in (("norms", bench_norms), ("vit", bench_vit), ("gpt2", bench_gpt2)):
        p = sub.add_parser(name)
        p.add_argument("--reps", type=int, default=10)
        p.add_argument("--warmup", type=int, default=2)
        p.add_argument("--threads", type=int, default=torch.get_num_threads())
        p.add_argument("--min", action="store_true")
        p.add_argument("specs", nargs="+")
        parts[name] = (p, fn)
    p = parts["norms"][0]
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--cols", type=int, default=768)
    p = parts["vit"][0]
    for k, d in (("batch", 128), ("img", 28), ("chans", 1), ("patch", 7), ("dim", 64), ("depth", 4), ("heads", 4),
                 ("mlp-ratio", 4), ("classes", 10)):
        p.add_argument("--" + k, type=int, default=d)
    p.add_argument("--pool", choices=("avg", "cls"), default="avg")
    p.add_argument("--gelu", choices=("erf", "tanh"), default="erf")
    p = parts["gpt2"][0]
    for k, d in (("batch", 4), ("seq", 64), ("vocab", 50304), ("block-size", 1024), ("n-layer", 12), ("n-head", 12),
                 ("n-embd", 768), ("bias", 1)):
        p.add_argument("--" + k, type=int, default=d)
    a = ap.parse_args()
    global STAT_MIN
    STAT_MIN = a.min
    if a.reps < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--reps must be >= 1, --warmup >= 0, --threads >= 1")
    torch.set_num_threads(a.threads)
    print("torch", torch.__version__, flush=True)
    fn = parts[a.part][1]
    for i, text in enumerate(a.specs):
        spec = parse(text)
        if spec is None:
            print(f"[torch] {a.part} {text}: not supported by the PyTorch oracles", file=sys.stderr)
            print("r", i, "-", flush=True)
            continue
        print("r", i, " ".join(f"{v:.6f}" for v in fn(a, spec, text)), flush=True)


if __name__ == "__main__":
    main()
