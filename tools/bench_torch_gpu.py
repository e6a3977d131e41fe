#!/usr/bin/python3
"""bench_torch_gpu.py: the PyTorch peers of derf's GPU benchmarks (tools/gpu_check.sh runs both on
the same machine and prints one table). Times on the GPU with CUDA events, median of --reps runs
after --warmup untimed ones.

  bench_torch_gpu.py norms [--rows 16384 --cols 768 --compile derf,layernorm --compile-dtypes bf16]   Derf y = g erf(a x + s) + b (fp32 math, bf16 or
        fp32 in/out, as derf's kernel) and LayerNorm / RMSNorm, forward and forward+backward, eager
        and torch.compile. Forward+backward is torch.autograd.grad(y, (x, params...), dy): the gradient
        of x and of every parameter, returned fresh (nothing accumulates into .grad, as in derf's timed
        backward, which overwrites dx).
  bench_torch_gpu.py gpt2 [--batch 16 --seq 1024 --norm layernorm|derf]   one GPT-2 124M training
        step (bf16 autocast, fp32 master weights, flash attention via scaled_dot_product_attention,
        fused AdamW, clip 1.0), eager and torch.compile; tokens/s.
  bench_torch_gpu.py vit [--batch 128 --norm layernorm|derf --modes eager,compile]   one ViT-S/16 training step (224x224x3,
        1000 classes, avg pooling, bf16 autocast, fp32 master weights, scaled_dot_product_attention,
        fused AdamW, soft-target cross-entropy), eager and torch.compile; images/s. The model is
        tools/vit_torch_parity.py's (timm's layout), the config derf's cuda_check --bench ViT.

Output on stdout: 'torch VERSION DEVICE', then one line per measure,
  'TORCH <key> <ms>'   e.g. 'TORCH norm derf bf16 16384x768 fwd+bwd compile 0.0612'
with the same keys as build/cuda/cuda_check's 'BENCH' lines. Without torch or without a GPU: one
line 'notorch REASON' and exit status 3. Progress and errors go to stderr.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
except Exception as e:  # noqa: BLE001 (any failure means: no peer)
    print("notorch", str(e).replace("\n", " "), flush=True)
    sys.exit(3)

import gpt2_torch_parity as gp  # noqa: E402
import vit_torch_parity as vp  # noqa: E402

DEV = "cuda"


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def report(key, ms):
    print(f"TORCH {key} {ms:.4f}", flush=True)


# ------------------------------------------------------------------------------------ norms
def derf_fn(x, alpha, s, w, b):
    """derf's kernel: fp32 math on bf16 (or fp32) activations, fp32 parameters, output in x's dtype."""
    return (w * torch.erf(alpha * x.float() + s) + b).to(x.dtype)


def rms_fn(x, w, eps):
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def bench_norms(a):
    R, C = a.rows, a.cols
    for dt, dn in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        torch.manual_seed(0)
        x = (torch.rand(R, C, device=DEV) * 6 - 3).to(dt).requires_grad_(True)
        dy = (torch.rand(R, C, device=DEV) - 0.5).to(dt)
        alpha = torch.full((1,), 0.5, device=DEV, requires_grad=True)
        s = torch.zeros(1, device=DEV, requires_grad=True)
        w32 = torch.ones(C, device=DEV, requires_grad=True)
        b32 = torch.zeros(C, device=DEV, requires_grad=True)
        # LayerNorm / RMSNorm as a PyTorch user runs them on a bf16 model: parameters in x's dtype
        w = torch.ones(C, device=DEV, dtype=dt, requires_grad=True)
        b = torch.zeros(C, device=DEV, dtype=dt, requires_grad=True)
        layers = {
            "derf": lambda f: f(x, alpha, s, w32, b32),
            "layernorm": lambda f: f(x, (C,), w, b, 1e-5),
            "rmsnorm": lambda f: f(x, w, 1e-5),
        }
        # the tensors whose gradients fwd+bwd computes (derf's backward: dx and every parameter gradient)
        wrt = {"derf": (x, alpha, s, w32, b32), "layernorm": (x, w, b), "rmsnorm": (x, w)}
        fns = {"derf": derf_fn, "layernorm": F.layer_norm, "rmsnorm": rms_fn}
        for name, call in layers.items():
            for mode in ("eager", "compile"):
                if mode == "compile" and (name not in a.compile.split(",") or dn not in a.compile_dtypes.split(",")):
                    continue   # only what the table needs (each compile costs seconds of the GPU window)
                f = fns[name] if mode == "eager" else torch.compile(fns[name])
                try:
                    def fwd():
                        with torch.no_grad():
                            call(f)

                    def fwd_bwd(inputs=wrt[name]):
                        # autograd.grad returns fresh gradients: no .grad accumulation (an extra add
                        # kernel per tensor that derf's timed backward does not do)
                        torch.autograd.grad(call(f), inputs, dy)

                    report(f"norm {name} {dn} {R}x{C} fwd {mode}", median_ms(fwd, 5, a.reps))
                    report(f"norm {name} {dn} {R}x{C} fwd+bwd {mode}", median_ms(fwd_bwd, 5, a.reps))
                except Exception as e:  # noqa: BLE001 (report and go on with the others)
                    print(f"[torch] norm {name} {dn} {mode}: {e}", file=sys.stderr)


# ------------------------------------------------------------------------------------ GPT-2
class FlashAttention(gp.CausalSelfAttention):
    """The parity model's attention, computed by scaled_dot_product_attention (what PyTorch users run)."""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, self.hs).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


def make_step(model, loss_fn, lr, betas, wd):
    """One training step as PyTorch users write it: AdamW (fused, weight decay on the >= 2-D tensors
    only), bf16 autocast around loss_fn(), clipping at 1.0."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=lr, betas=betas, eps=1e-8, fused=True)
    params = list(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return step


class GPTOnDevice(gp.GPT):
    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        if self.shared_scale is not None:
            x = self.shared_scale * x
        for blk in self.h:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1)


def bench_gpt2(a):
    gp.CausalSelfAttention = FlashAttention  # Block looks the name up when it is built
    spec = vp.parse_norm(a.norm)
    if spec["kind"] == "layernorm":
        gp.make_norm = lambda sp, C: nn.LayerNorm(C, eps=sp["eps"])
    else:
        gp.make_norm = vp.make_norm
    cfg = {"vocab": 50304, "block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768, "bias": True,
           "shared_scale": spec["kind"] == "pointwise", "norm": spec}
    for mode in ("eager", "compile"):
        torch.manual_seed(0)
        model = GPTOnDevice(cfg).to(DEV)
        model.train()
        fwd = model if mode == "eager" else torch.compile(model)
        tokens = torch.randint(0, 50257, (a.batch, a.seq), device=DEV)
        targets = torch.randint(0, 50257, (a.batch, a.seq), device=DEV)
        step = make_step(model, lambda: fwd(tokens, targets), 6e-4, (0.9, 0.95), 0.1)
        try:
            ms = median_ms(step, 3, a.reps)
        except Exception as e:  # noqa: BLE001
            print(f"[torch] gpt2 {a.norm} {mode}: {e}", file=sys.stderr)
            continue
        report(f"gpt2 {a.norm} B{a.batch} T{a.seq} step {mode}", ms)
        print(f"[torch] gpt2 {a.norm} {mode}: {ms:.1f} ms/step, {a.batch * a.seq / ms * 1e3:.0f} tokens/s",
              file=sys.stderr)
        del model, step, fwd
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------ ViT
class SDPAttention(vp.Attention):
    """The parity model's attention through scaled_dot_product_attention (flash / memory-efficient)."""

    def forward(self, x):
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.NH, self.hs).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


VIT_S16 = {"img": 224, "chans": 3, "patch": 16, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4,
           "classes": 1000, "pool": "avg", "gelu": "erf"}


def bench_vit(a):
    vp.Attention = SDPAttention  # Block looks the name up when it is built
    spec = vp.parse_norm(a.norm)
    if spec["kind"] == "layernorm":
        vp.make_norm = lambda sp, C: nn.LayerNorm(C, eps=sp["eps"])
    cfg = dict(VIT_S16, norm=spec)
    for mode in a.modes.split(","):
        torch.manual_seed(0)
        model = vp.ViT(cfg).to(DEV)
        model.train()
        fwd = model if mode == "eager" else torch.compile(model)
        img = torch.randn(a.batch, 3, 224, 224, device=DEV)
        q = torch.softmax(torch.randn(a.batch, 1000, device=DEV), dim=-1)   # soft targets (mixup-like)
        step = make_step(model, lambda: -(q * F.log_softmax(fwd(img).float(), dim=-1)).sum(-1).mean(), 1e-3,
                         (0.9, 0.999), 0.05)
        try:
            ms = median_ms(step, 3, a.reps)
        except Exception as e:  # noqa: BLE001
            print(f"[torch] vit {a.norm} {mode}: {e}", file=sys.stderr)
            continue
        report(f"vit-s16 {a.norm} B{a.batch} 224px step {mode}", ms)
        print(f"[torch] vit-s16 {a.norm} {mode}: {ms:.1f} ms/step, {a.batch / ms * 1e3:.0f} images/s", file=sys.stderr)
        del model, step, fwd
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description="PyTorch GPU peers of derf's CUDA benchmarks")
    sub = ap.add_subparsers(dest="part", required=True)
    p = sub.add_parser("norms")
    p.add_argument("--rows", type=int, default=16384)
    p.add_argument("--cols", type=int, default=768)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--compile", default="derf,layernorm,rmsnorm",
                   help="the norms also timed under torch.compile (comma-separated; 'none': eager only)")
    p.add_argument("--compile-dtypes", default="bf16,fp32", help="the dtypes those compiles run in")
    p = sub.add_parser("gpt2")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--norm", default="layernorm")
    p.add_argument("--reps", type=int, default=10)
    p = sub.add_parser("vit")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--norm", default="layernorm")
    p.add_argument("--modes", default="eager,compile", help="eager, compile or both (comma-separated)")
    p.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    if a.reps < 1:
        ap.error("--reps must be >= 1")
    if a.part == "norms" and (a.rows < 1 or a.cols < 1):
        ap.error("--rows and --cols must be >= 1")
    if a.part == "norms" and not (set(a.compile.split(",")) <= {"derf", "layernorm", "rmsnorm", "none"} and
                                  set(a.compile_dtypes.split(",")) <= {"bf16", "fp32"}):
        ap.error("--compile takes derf, layernorm, rmsnorm or none; --compile-dtypes bf16 and/or fp32")
    if a.part == "gpt2" and not (1 <= a.seq <= 1024 and a.batch >= 1):
        ap.error("--batch must be >= 1 and --seq in [1, 1024]")
    if a.part == "vit" and (a.batch < 1 or not set(a.modes.split(",")) <= {"eager", "compile"}):
        ap.error("--batch must be >= 1 and --modes eager, compile or eager,compile")
    torch.backends.cuda.matmul.allow_tf32 = True
    print("torch", torch.__version__, torch.cuda.get_device_name(0).replace(" ", "_"), flush=True)
    {"norms": bench_norms, "gpt2": bench_gpt2, "vit": bench_vit}[a.part](a)


if __name__ == "__main__":
    main()
