#!/usr/bin/python3
"""bench_infer_torch.py: the PyTorch peer of bench/bench_infer.c (docs/inference.md): inference of the same
checkpoint under torch.no_grad(), eval mode, float32, CPU, in a fresh process so its peak memory is its own.
The models are the parity oracles' (tools/vit_torch_parity.py, tools/gpt2_torch_parity.py) with torch's
fused nn.LayerNorm (tools/bench_torch.py); GPT-2 generation keeps a KV cache (keys and values concatenated
per step, as Hugging Face's GPT-2 does).

Usage:
  bench_infer_torch.py vit  CKPT --batch B --reps R --single S --threads N
      -> 'r BATCH_IMG_PER_S SINGLE_IMG_PER_S PEAK_KB BASE_KB'
  bench_infer_torch.py gpt2 CKPT --batch B --seq T --prompt P --gen G --reps R --threads N
      -> 'r PREFILL_TOK_PER_S DECODE_TOK_PER_S PEAK_KB BASE_KB'
BATCH: median over R timed batches (after one untimed); SINGLE: S images one at a time; PREFILL: B x T
tokens in one causal forward; DECODE: G greedy tokens after a P-token prompt, one sequence, KV cache.
Times are process CPU time (time.process_time, as the C side: meant for one thread).
PEAK_KB: ru_maxrss at the end; BASE_KB: ru_maxrss after the imports, before the model is read.
Without torch: 'notorch REASON', exit 3.
"""
import argparse
import math
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_torch  # noqa: E402,F401  (exits with 'notorch' when torch is missing; installs fused LayerNorm)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import gpt2_torch_parity as gp  # noqa: E402
import vit_torch_parity as vp  # noqa: E402


def maxrss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def vit(a, base):
    params, meta = vp.read_safetensors(a.ckpt)
    cfg = vp.config_from_meta(meta)
    model = vp.ViT(cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    model.eval()
    del params
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, cfg["chans"], cfg["img"], cfg["img"], generator=g)
    with torch.no_grad():
        model(x)
        ts = []
        for _ in range(a.reps):
            t = time.process_time()
            model(x)
            ts.append(time.process_time() - t)
        one = x[:1]
        model(one)
        t = time.process_time()
        for _ in range(a.single):
            model(one)
        single = a.single / (time.process_time() - t)
    return a.batch / median(ts), single


def block_step(blk, x, cache, pos):
    """One block on T new positions pos..pos+T-1 with the layer's (k, v) cache; returns x, new cache."""
    at = blk.attn
    B, T, C = x.shape
    q, k, v = at.c_attn(blk.ln_1(x)).split(C, dim=2)
    q, k, v = (t.view(B, T, at.NH, at.hs).transpose(1, 2) for t in (q, k, v))
    if cache is not None:
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(at.hs))
    if T > 1:
        att = att.masked_fill(~torch.ones(T, pos + T, dtype=torch.bool).tril(pos), float("-inf"))
    y = at.c_proj((torch.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(B, T, C))
    x = x + y
    return x + blk.mlp(blk.ln_2(x)), (k, v)


def gpt_step(model, idx, caches, pos):
    T = idx.shape[1]
    x = model.wte(idx) + model.wpe(torch.arange(pos, pos + T))
    if model.shared_scale is not None:
        x = model.shared_scale * x
    for i, blk in enumerate(model.h):
        x, caches[i] = block_step(blk, x, caches[i], pos)
    return F.linear(model.ln_f(x[:, -1]), model.wte.weight)


def gpt2(a, base):
    params, meta = vp.read_safetensors(a.ckpt)
    cfg = gp.config_from_meta(meta)
    model = gp.load_model(cfg, params, torch.float32)
    model.eval()
    del params
    g = torch.Generator().manual_seed(0)
    V = cfg["vocab"]
    toks = torch.randint(0, V, (a.batch, a.seq), generator=g)
    with torch.no_grad():
        L = len(model.h)
        gpt_step(model, toks, [None] * L, 0)
        ts = []
        for _ in range(a.reps):
            t = time.process_time()
            gpt_step(model, toks, [None] * L, 0)
            ts.append(time.process_time() - t)
        prefill = a.batch * a.seq / median(ts)
        dts = []
        for _ in range(a.reps):
            caches = [None] * L
            lg = gpt_step(model, toks[:1, :a.prompt], caches, 0)
            t = time.process_time()
            for i in range(a.gen):
                nxt = lg.argmax(-1, keepdim=True)
                lg = gpt_step(model, nxt, caches, a.prompt + i)
            dts.append(time.process_time() - t)
        decode = a.gen / median(dts)
    return prefill, decode


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer of bench/bench_infer.c")
    ap.add_argument("part", choices=("vit", "gpt2"))
    ap.add_argument("ckpt")
    for k, d in (("batch", 256), ("reps", 5), ("single", 64), ("seq", 256), ("prompt", 16), ("gen", 128),
                 ("threads", 1)):
        ap.add_argument("--" + k, type=int, default=d)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    base = maxrss_kb()
    x, y = vit(a, base) if a.part == "vit" else gpt2(a, base)
    print(f"r {x:.3f} {y:.3f} {maxrss_kb()} {base}", flush=True)


if __name__ == "__main__":
    main()
