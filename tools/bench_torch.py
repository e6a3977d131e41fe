#!/usr/bin/python3
"""bench_torch.py: the PyTorch peers of `derf bench` (src/cli/cmd_bench.c), which runs this script in the
same invocation with the same sizes and prints the ratios. Eager PyTorch, float32, CPU.

Usage (derf bench builds these command lines; the norm specs are derf's canonical spec strings):
  bench_torch.py norms --rows N --cols C --reps R --warmup W [--min] --threads N SPEC...
      forward, forward+backward of one norm layer: median (--min: minimum) of R timed runs after W
  bench_torch.py MODEL [model options] --threads N SPEC...      MODEL: vit gpt2 dit wav2vec hyena caduceus
      a server for one training step of MODEL per SPEC, driven on stdin (see serve()); the model options
      are the sizes (--batch, --seq, --dim, ... as main() lists them for each model)

The models are the parity oracles' (tools/*_torch_parity.py: the same architectures derf trains, checked
against derf tensor by tensor), except that LayerNorm is torch's fused nn.LayerNorm, what a PyTorch user
would run. The steps match derf bench's (docs/performance.md): ViT = forward + cross-entropy (label
smoothing 0.1) + backward + AdamW (lr 4e-3, wd 0.05); GPT-2, HyenaDNA, Caduceus-PS = forward + loss +
backward + clip_grad_norm_(1.0) + AdamW (betas 0.9/0.95, wd 0.1 on the >= 2-D tensors); DiT = forward +
eps-MSE + backward + AdamW (lr 1e-4, no decay); wav2vec 2.0 = forward + fairseq loss / M + backward +
clip 10 + AdamW, with fixed draws. The caller sets OPENBLAS_NUM_THREADS in the environment
(docs/performance.md explains the choice).

Output on stdout: 'torch VERSION' first. norms: one line per SPEC in the order given, 'r INDEX MS MS2'
(forward ms, forward+backward ms), with '-' for a spec these oracles cannot build (e.g. one with
transforms). Models: the answers of serve(). Progress goes to stderr. Without torch: one line
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
import dit_torch_parity as dp  # noqa: E402
import wav2vec_torch_parity as wp  # noqa: E402
import hyena_torch_parity as hp  # noqa: E402
import caduceus_torch_parity as cp  # noqa: E402

_oracle_make_norm = vp.make_norm


def make_norm(spec, C):
    """The oracles' norm layers, but LayerNorm is torch's fused kernel (the fair peer)."""
    if spec["kind"] == "layernorm" and spec["affine"] and spec["bias"]:
        return nn.LayerNorm(C, eps=spec["eps"])
    if spec["kind"] == "layernorm" and not spec["affine"]:
        return nn.LayerNorm(C, eps=spec["eps"], elementwise_affine=False)  # DiT's norms
    return _oracle_make_norm(spec, C)


for _m in (vp, gp, wp, hp, cp):  # the model files look the name up at build time
    _m.make_norm = make_norm


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


def build_vit(a, spec):
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
    return step


def lm_step(model, lr, tokens, targets):
    """zero_grad, model(tokens, targets) -> (_, loss), backward, clip 1, AdamW (betas 0.9/0.95, wd 0.1)"""
    opt = adamw(model, lr, (0.9, 0.95), 0.1)
    params = list(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return step


def build_gpt2(a, spec):
    cfg = {"vocab": a.vocab, "block_size": a.block_size, "n_layer": a.n_layer, "n_head": a.n_head,
           "n_embd": a.n_embd, "bias": bool(a.bias), "shared_scale": spec["kind"] == "pointwise", "norm": spec}
    model = gp.GPT(cfg)
    model.train()
    vmax = 50257 if a.vocab == 50304 else a.vocab  # GPT-2's padded rows are never tokens
    tokens = torch.randint(0, vmax, (a.batch, a.seq))
    targets = torch.randint(0, vmax, (a.batch, a.seq))
    return lm_step(model, 6e-4, tokens, targets)


def build_dit(a, spec):
    """DiT training step of train-dit: eps-MSE on the noise channels, AdamW lr 1e-4, no weight decay (the
    q_sample of the batch and the EMA are left out on both sides)"""
    cfg = {"img": a.img, "chans": a.chans, "patch": a.patch, "dim": a.dim, "depth": a.depth, "heads": a.heads,
           "mlp_ratio": a.mlp_ratio, "classes": a.classes, "freq_dim": a.freq_dim, "learn_sigma": a.learn_sigma,
           "norm": spec}
    model = dp.DiT(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    x = torch.randn(a.batch, a.chans, a.img, a.img)
    t = torch.randint(0, 1000, (a.batch,)).float()
    y = torch.randint(0, a.classes + 1, (a.batch,))
    eps = torch.randn(a.batch, a.chans, a.img, a.img)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x, t, y)
        loss = ((out[:, :a.chans] - eps) ** 2).mean()
        loss.backward()
        opt.step()
    return step


def build_wav2vec(a, spec):
    """wav2vec 2.0 pretraining step of train-speech: the fairseq loss / M, clip 10, AdamW (lr 5e-4, wd 0.01);
    fixed draws (a mask of --masked frames per row, K negatives from the same row's masked frames, Gumbel
    uniforms), as derf bench keeps its draws fixed"""
    cfg = {k: getattr(a, k) for k in ("conv_dim", "d", "n_layer", "n_head", "ffn", "final_dim", "pos_k", "pos_groups",
                                       "groups", "vars", "logit_temp", "div_weight", "pen_weight", "grad_mult")}
    cfg["conv"] = [tuple(int(v) for v in p.split(":")) for p in a.conv.split(",")]
    model = wp.Wav2Vec2(cfg, spec)
    model.train()
    opt = adamw(model, 5e-4, (0.9, 0.98), 0.01)
    T = a.samples
    for k, s in cfg["conv"]:
        T = (T - k) // s + 1
    wav = torch.randn(a.batch, a.samples)
    mask = torch.zeros(a.batch, T, dtype=torch.bool)
    for b in range(a.batch):
        mask[b, torch.randperm(T)[:a.masked]] = True
    M, K = a.batch * a.masked, a.n_neg
    rows = torch.arange(M).view(a.batch, a.masked)
    neg = torch.empty(M, K, dtype=torch.long)
    for b in range(a.batch):
        for j in range(a.masked):
            other = torch.randint(0, a.masked - 1, (K,))
            other = other + (other >= j).long()
            neg[b * a.masked + j] = rows[b, other]
    u = torch.rand(M * a.groups * a.vars).clamp(1e-6, 1 - 1e-6)
    params = list(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        loss, _, _, _, _, m = model(wav, mask, neg, u, 2.0)
        (loss / m).backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
    return step


def build_hyena(a, spec):
    """HyenaDNA next-token pretraining step of train-dna (clip 1, AdamW lr 6e-4, betas 0.9/0.95, wd 0.1)"""
    cfg = {"vocab": a.vocab, "d_model": a.d_model, "n_layer": a.n_layer, "d_inner": a.d_inner,
           "filter_order": a.filter_order, "l_max": a.l_max, "sin_w": a.sin_w, "n_classes": 0, "emb_scale": a.emb_scale}
    model = hp.Hyena(cfg, spec).float()  # its positional buffers are built in float64
    model.train()
    tokens = torch.randint(7, 11, (a.batch, a.seq))
    targets = torch.randint(7, 11, (a.batch, a.seq))
    return lm_step(model, 6e-4, tokens, targets)


def build_caduceus(a, spec):
    """Caduceus-PS masked-LM pretraining step of train-dna (15% of the positions predicted; clip 1, AdamW lr 8e-3,
    betas 0.9/0.95, wd 0.1). The selective scan is the parity script's loop over time, as Mamba's own
    selective_scan_ref (its only CPU path) runs it."""
    cfg = {"vocab": a.vocab, "d_model": a.d_model, "n_layer": a.n_layer, "d_state": a.d_state, "expand": a.expand,
           "dt_rank": a.dt_rank, "d_conv": a.d_conv, "n_classes": 0, "emb_scale": a.emb_scale}
    model = cp.Caduceus(cfg, spec)
    with torch.no_grad():  # Mamba's S4D-real init, as derf's (the parity script leaves A_log at 0)
        for mod in model.modules():
            if isinstance(mod, cp.Mamba):
                mod.A_log.copy_(torch.log(torch.arange(1, a.d_state + 1, dtype=torch.float32)).repeat(mod.E, 1))
    model.train()
    tokens = torch.randint(7, 11, (a.batch, a.seq))
    targets = torch.where(torch.rand(a.batch, a.seq) < 0.15, torch.randint(7, 11, (a.batch, a.seq)),
                          torch.full((a.batch, a.seq), -1))
    return lm_step(model, 8e-3, tokens, targets)


MODELS = {"vit": build_vit, "gpt2": build_gpt2, "dit": build_dit, "wav2vec": build_wav2vec, "hyena": build_hyena,
          "caduceus": build_caduceus}


def serve(a, build):
    """The model parts: derf bench drives the steps through stdin so that its own steps and these interleave.
    Commands (one per line): 'build I' (answers 'ready I', or 'skip I' for a spec these oracles cannot build),
    'run I K' (K steps of model I; answers 't WALL CPU ...': each step's wall time and process CPU time, ms), 'free I' (answers 'ok'),
    'quit'."""
    models = {}
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "quit":
            break
        i = int(w[1])
        if w[0] == "build":
            spec = parse(a.specs[i])
            if spec is None:
                print(f"[torch] {a.part} {a.specs[i]}: not supported by the PyTorch oracles", file=sys.stderr)
                print("skip", i, flush=True)
                continue
            torch.manual_seed(i)
            models[i] = build(a, spec)
            print("ready", i, flush=True)
        elif w[0] == "run":
            ts = []
            for _ in range(int(w[2])):
                t, c = time.perf_counter(), time.process_time()
                models[i]()
                ts += [time.perf_counter() - t, time.process_time() - c]
            print("t", " ".join(f"{1e3 * v:.4f}" for v in ts), flush=True)
        elif w[0] == "free":
            models.pop(i, None)
            print("ok", flush=True)


def main():
    ap = argparse.ArgumentParser(description="PyTorch peers of derf bench")
    sub = ap.add_subparsers(dest="part", required=True)
    parts = {}
    for name in ("norms",) + tuple(MODELS):
        p = sub.add_parser(name)
        if name == "norms":
            p.add_argument("--reps", type=int, default=10)
            p.add_argument("--warmup", type=int, default=2)
            p.add_argument("--min", action="store_true")
        p.add_argument("--threads", type=int, default=torch.get_num_threads())
        p.add_argument("specs", nargs="+")
        parts[name] = p

    def ints(part, pairs):
        for k, d in pairs:
            parts[part].add_argument("--" + k, type=int, default=d)

    def floats(part, pairs):
        for k, d in pairs:
            parts[part].add_argument("--" + k, type=float, default=d)
    ints("norms", (("rows", 8192), ("cols", 768)))
    ints("vit", (("batch", 128), ("img", 28), ("chans", 1), ("patch", 7), ("dim", 64), ("depth", 4), ("heads", 4),
                 ("mlp-ratio", 4), ("classes", 10)))
    parts["vit"].add_argument("--pool", choices=("avg", "cls"), default="avg")
    parts["vit"].add_argument("--gelu", choices=("erf", "tanh"), default="erf")
    ints("gpt2", (("batch", 4), ("seq", 64), ("vocab", 50304), ("block-size", 1024), ("n-layer", 12), ("n-head", 12),
                  ("n-embd", 768), ("bias", 1)))
    ints("dit", (("batch", 64), ("img", 28), ("chans", 1), ("patch", 7), ("dim", 64), ("depth", 4), ("heads", 4),
                 ("mlp-ratio", 4), ("classes", 10), ("freq-dim", 256), ("learn-sigma", 0)))
    ints("wav2vec", (("batch", 8), ("samples", 64000), ("masked", 100), ("conv-dim", 128), ("d", 256), ("n-layer", 4),
                     ("n-head", 4), ("ffn", 1024), ("final-dim", 128), ("pos-k", 128), ("pos-groups", 16),
                     ("groups", 2), ("vars", 320), ("n-neg", 100)))
    floats("wav2vec", (("logit-temp", 0.1), ("div-weight", 0.1), ("pen-weight", 10.0), ("grad-mult", 0.1)))
    parts["wav2vec"].add_argument("--conv", default="10:5,3:2,3:2,3:2,3:2,2:2,2:2")
    ints("hyena", (("batch", 16), ("seq", 1024), ("vocab", 16), ("d-model", 128), ("n-layer", 2), ("d-inner", 512),
                   ("filter-order", 64), ("l-max", 1026)))
    floats("hyena", (("sin-w", 10.0), ("emb-scale", 0.0)))
    ints("caduceus", (("batch", 16), ("seq", 1024), ("vocab", 16), ("d-model", 64), ("n-layer", 4), ("d-state", 16),
                      ("expand", 2), ("dt-rank", 4), ("d-conv", 4)))
    floats("caduceus", (("emb-scale", 0.0),))
    a = ap.parse_args()
    if a.threads < 1 or (a.part == "norms" and (a.reps < 1 or a.warmup < 0)):
        ap.error("--reps must be >= 1, --warmup >= 0, --threads >= 1")
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # as derf sets FTZ/DAZ: the peer at its best
    print("torch", torch.__version__, flush=True)
    if a.part != "norms":
        serve(a, MODELS[a.part])
        return
    global STAT_MIN
    STAT_MIN = a.min
    for i, text in enumerate(a.specs):
        spec = parse(text)
        if spec is None:
            print(f"[torch] {a.part} {text}: not supported by the PyTorch oracles", file=sys.stderr)
            print("r", i, "-", flush=True)
            continue
        print("r", i, " ".join(f"{v:.6f}" for v in bench_norms(a, spec, text)), flush=True)


if __name__ == "__main__":
    main()
