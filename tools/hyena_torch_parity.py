#!/usr/bin/python3
"""hyena_torch_parity.py: checks derf's C HyenaDNA (src/models/hyena.c) against the same model written here in
plain PyTorch from the Caduceus repo's HyenaOperator / HyenaFilter / LM backbone (docs/paper.md section 5.5): input
projection, short depthwise causal Conv1d (kernel 3, padding 2, cut to T), implicit filter MLP over positional
features with one shared Sin module and exponential modulation, upstream's fftconv (rfft of size 2T, k_f / N, irfft
with norm="forward", + D u), gating, out_proj; pre-norm residual blocks with a GELU(tanh) MLP, ln_f, tied LM head
or mean pooling + linear head.

Usage: /usr/bin/python3 tools/hyena_torch_parity.py [--f64] DIR [DIR ...]   (the test uses --f64)

Each DIR holds what tests/test_hyena.c writes (safetensors, F32):
  params.safetensors  every parameter under its upstream name; __metadata__ = derf_hyena_config_to_meta
  grads.safetensors   derf's gradient of the mean cross-entropy for every parameter
  batch.safetensors   tokens [B,T], targets [B,T] (LM; -1 ignored) or [B] (classifier), derf's logits and loss
The model runs in float32 (float64 with --f64); a tensor passes when max|derf - torch| <= ATOL + RTOL * max|torch| (ATOL 1e-5,
RTOL 1e-3). Exit 0 if all pass, 1 on a mismatch or a missing/extra tensor, 2 on bad usage.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vit_torch_parity import compare_outputs_and_grads, make_norm, parse_norm, read_safetensors, run_cases  # noqa: E402


class Sin(nn.Module):
    def __init__(self, O, w):
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(1, O))

    def forward(self, x):
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    def __init__(self, d, O, l_max, w):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(d))
        act = Sin(O, w)  # one module in three places, as upstream
        self.implicit_filter = nn.Sequential(nn.Linear(5, O), act, nn.Linear(O, O), act, nn.Linear(O, O), act,
                                             nn.Linear(O, d, bias=False))
        # PositionalEmbedding(emb_dim 5, l_max): z = [t, Re exp(-i f w), Im exp(-i f w)]
        t = torch.linspace(0, 1, l_max, dtype=torch.float64)[:, None]
        bands = 2
        t_rescaled = torch.linspace(0, l_max - 1, l_max, dtype=torch.float64)[:, None]
        wt = 2 * math.pi * t_rescaled / l_max
        f = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float32).double()[None]
        z = torch.exp(-1j * f * wt)
        self.register_buffer("z", torch.cat([t, z.real, z.imag], dim=-1))
        self.register_buffer("t", t)
        # ExponentialModulation: deltas = linspace(ln(1e-2)/1.5, ln(1e-2)/0.3, d); k *= exp(-t |delta|)
        self.register_buffer("deltas", torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, d, dtype=torch.float64))

    def filter(self, L):
        h = self.implicit_filter(self.z[:L])
        return h * torch.exp(-self.t[:L] * self.deltas.abs())   # [L, d]


def fftconv(u, k, D):
    """upstream's fftconv: u [B,d,T], k [d,T], D [d]"""
    T = u.shape[-1]
    n = 2 * T
    k_f = torch.fft.rfft(k, n=n) / n
    u_f = torch.fft.rfft(u, n=n)
    y = torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., :T]
    return y + u * D[:, None]


class HyenaOperator(nn.Module):
    def __init__(self, d, O, l_max, w):
        super().__init__()
        self.d = d
        self.in_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.short_filter = nn.Conv1d(3 * d, 3 * d, kernel_size=3, groups=3 * d, padding=2)
        self.filter_fn = HyenaFilter(d, O, l_max, w)

    def forward(self, h):
        T = h.shape[1]
        u = self.in_proj(h).transpose(1, 2)                     # [B,3d,T]
        uc = self.short_filter(u)[..., :T]
        x0, x1, v = uc.split(self.d, dim=1)
        k = self.filter_fn.filter(T).transpose(0, 1)            # [d,T]
        v = fftconv(v * x1, k, self.filter_fn.bias)
        return self.out_proj((v * x0).transpose(1, 2))


class Mlp(nn.Module):
    def __init__(self, d, H):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, H), nn.Linear(H, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg, spec):
        super().__init__()
        d = cfg["d_model"]
        self.norm1, self.norm2 = make_norm(spec, d), make_norm(spec, d)
        self.mixer = HyenaOperator(d, cfg["filter_order"], cfg["l_max"], cfg["sin_w"])
        self.mlp = Mlp(d, cfg["d_inner"])

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Embeddings(nn.Module):
    """the token embedding; with emb_scale > 0 also derf's learnable scalar `scale` multiplying its output (the
    paper's GPT-2 shared_scale, docs/dna.md)"""
    def __init__(self, V, d, emb_scale=0.0):
        super().__init__()
        self.word_embeddings = nn.Embedding(V, d)
        if emb_scale > 0:
            self.scale = nn.Parameter(torch.tensor([float(emb_scale)]))

    def forward(self, ids):
        x = self.word_embeddings(ids)
        return x * self.scale if hasattr(self, "scale") else x


class Backbone(nn.Module):
    def __init__(self, cfg, spec):
        super().__init__()
        self.embeddings = Embeddings(cfg["vocab"], cfg["d_model"], cfg["emb_scale"])
        self.layers = nn.ModuleList([Block(cfg, spec) for _ in range(cfg["n_layer"])])
        self.ln_f = make_norm(spec, cfg["d_model"])

    def forward(self, ids):
        x = self.embeddings(ids)
        for b in self.layers:
            x = b(x)
        return self.ln_f(x)


class Hyena(nn.Module):
    def __init__(self, cfg, spec):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg, spec)
        if cfg["n_classes"]:
            self.head = nn.Linear(cfg["d_model"], cfg["n_classes"])

    def forward(self, ids, targets):
        y = self.backbone(ids)
        if self.cfg["n_classes"]:
            logits = self.head(y.mean(1))
            return logits, F.cross_entropy(logits, targets)
        logits = y @ self.backbone.embeddings.word_embeddings.weight.t()
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)


def load_params(model, params, dtype):
    """Copies derf's tensors into the model; False (with a FAIL line) when names or shapes differ."""
    named = dict(model.named_parameters())
    if set(params) != set(named):
        print(f"FAIL params.safetensors names differ: {sorted(set(params) ^ set(named))}")
        return False
    with torch.no_grad():
        for name, p in named.items():
            if tuple(params[name].shape) != tuple(p.shape):
                print(f"FAIL {name}: shape {list(params[name].shape)} vs torch {list(p.shape)}")
                return False
            p.copy_(torch.from_numpy(np.asarray(params[name])).to(dtype))
    return True


def run_batch(model, batch, grads):
    """forward + backward on the batch's tokens and targets, then every comparison"""
    ids = torch.from_numpy(np.asarray(batch["tokens"]).astype(np.int64))
    targets = torch.from_numpy(np.asarray(batch["targets"]).astype(np.int64))
    logits, loss = model(ids, targets)
    loss.backward()
    return compare_outputs_and_grads([("logits", batch["logits"], logits), ("loss", batch["loss"], loss)],
                                     model, grads)


def check_seq_dir(d, dtype, kind, int_keys, build):
    """The DNA models' case folder: params/grads/batch safetensors; the config from the metadata (model=kind, the
    integer int_keys, sin_w when present); build(cfg, spec) makes the torch model; returns (ok, worst)."""
    params, meta = read_safetensors(f"{d}/params.safetensors")
    grads, _ = read_safetensors(f"{d}/grads.safetensors")
    batch, _ = read_safetensors(f"{d}/batch.safetensors")
    if meta.get("model") != kind:
        print(f"FAIL {d}: not a {kind} parameter file")
        return False, 0.0
    cfg = {k: int(meta[k]) for k in int_keys}
    if "sin_w" in meta:
        cfg["sin_w"] = float(meta["sin_w"])
    cfg["emb_scale"] = float(meta.get("emb_scale", 0))
    spec = parse_norm(meta["norm"])
    B, T = batch["tokens"].shape
    print(f"== {d}: {kind} norm {meta['norm']} {' '.join(f'{k} {v}' for k, v in cfg.items())} B {B} T {T} ({dtype})")
    model = build(cfg, spec).to(dtype)
    if not load_params(model, params, dtype):
        return False, 0.0
    return run_batch(model, batch, grads)


def check_dir(d, dtype):
    return check_seq_dir(d, dtype, "hyena", ("vocab", "d_model", "n_layer", "d_inner", "filter_order", "l_max", "n_classes"),
                         Hyena)


def main():
    run_cases(check_dir, "hyena_torch_parity", __doc__)


if __name__ == "__main__":
    main()
