#!/usr/bin/python3
"""caduceus_torch_parity.py: checks derf's C Caduceus-PS (src/models/caduceus.c) against the same model written
here in plain PyTorch from the Caduceus / Mamba sources (docs/paper.md section 5.6), with the selective scan as a
plain Python loop over time (s_t = exp(delta_t A) s_{t-1} + delta_t B_t x_t, y_t = C_t . s_t + D x_t; autograd
gives the backward) and reverse-complement parameter sharing implemented LITERALLY as upstream does it: a
2d-channel stream [E(ids) ; flip_{L,C}(E(rc(ids)))], every norm / BiMamba applied to the first half and to
flip_{L,C}(second half) and flipped back, residual adds on the whole stream, the RCPS LM head
fwd(x[:d]) + W[comp] flip_C(x[d:]), and the conjoined classifier (both halves pooled, one head, logits averaged).
derf computes the same with the backbone run on ids and rc(ids) as one 2B batch, so this also checks that
equivalence. BiMamba: mamba_rev shares in_proj and out_proj with mamba_fwd and runs on flip_L of the input.

Usage: /usr/bin/python3 tools/caduceus_torch_parity.py [--f64] DIR [DIR ...]   (the test uses --f64)
Files in DIR as tests/test_caduceus.c writes them: params.safetensors (metadata: derf_caduceus_config_to_meta),
grads.safetensors, batch.safetensors (tokens, targets, logits, loss). Same tolerances and exit codes as
vit_torch_parity.py: max|derf - torch| <= 1e-5 + 1e-3 max|torch| per tensor.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hyena_torch_parity import Embeddings, check_seq_dir  # noqa: E402
from vit_torch_parity import make_norm, run_cases  # noqa: E402

COMP = [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]  # A7<->T10, C8<->G9, the rest fixed


class Mamba(nn.Module):
    def __init__(self, d, E, N, R, K, in_proj=None, out_proj=None):
        super().__init__()
        self.E, self.N, self.R = E, N, R
        self.in_proj = in_proj if in_proj is not None else nn.Linear(d, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, K, groups=E, padding=K - 1, bias=True)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(torch.zeros(E, N))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = out_proj if out_proj is not None else nn.Linear(E, d, bias=False)

    def forward(self, h):
        B, T, _ = h.shape
        x, z = self.in_proj(h).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :T]).transpose(1, 2)
        dr, Bm, Cm = self.x_proj(x).split([self.R, self.N, self.N], dim=-1)
        delta = F.softplus(self.dt_proj(dr))
        A = -torch.exp(self.A_log)
        s = torch.zeros(B, self.E, self.N, dtype=h.dtype)
        ys = []
        for t in range(T):  # the plain loop
            dt = delta[:, t, :, None]
            s = torch.exp(dt * A) * s + dt * Bm[:, t, None, :] * x[:, t, :, None]
            ys.append((s * Cm[:, t, None, :]).sum(-1) + self.D * x[:, t])
        y = torch.stack(ys, dim=1)
        return self.out_proj(y * F.silu(z))


class BiMamba(nn.Module):
    def __init__(self, d, E, N, R, K):
        super().__init__()
        self.mamba_fwd = Mamba(d, E, N, R, K)
        self.mamba_rev = Mamba(d, E, N, R, K, self.mamba_fwd.in_proj, self.mamba_fwd.out_proj)

    def forward(self, h):
        return self.mamba_fwd(h) + self.mamba_rev(h.flip(1)).flip(1)


class Layer(nn.Module):
    def __init__(self, cfg, spec):
        super().__init__()
        d = cfg["d_model"]
        self.norm = make_norm(spec, d)
        self.mixer = BiMamba(d, cfg["expand"] * d, cfg["d_state"], cfg["dt_rank"], cfg["d_conv"])


class Backbone(nn.Module):
    def __init__(self, cfg, spec):
        super().__init__()
        self.embeddings = Embeddings(cfg["vocab"], cfg["d_model"], cfg["emb_scale"])
        self.layers = nn.ModuleList([Layer(cfg, spec) for _ in range(cfg["n_layer"])])
        self.norm_f = make_norm(spec, cfg["d_model"])


def rcps(module, x, d):
    """RCPSWrapper: the module on the first half and on flip_{L,C}(second half), flipped back"""
    return torch.cat([module(x[..., :d]), module(x[..., d:].flip(1, 2)).flip(1, 2)], dim=-1)


class Caduceus(nn.Module):
    def __init__(self, cfg, spec):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg, spec)
        if cfg["n_classes"]:
            self.head = nn.Linear(cfg["d_model"], cfg["n_classes"])

    def forward(self, ids, targets):
        d, emb = self.cfg["d_model"], self.backbone.embeddings
        comp = torch.tensor(COMP[:self.cfg["vocab"]])
        rc_ids = comp[ids].flip(1)
        x = torch.cat([emb(ids), emb(rc_ids).flip(1, 2)], dim=-1)            # RCPSEmbedding
        for layer in self.backbone.layers:
            x = x + rcps(layer.mixer, rcps(layer.norm, x, d), d)              # Add -> Norm -> Mixer, per half
        x = rcps(self.backbone.norm_f, x, d)
        if self.cfg["n_classes"]:
            f, r = x[..., :d].mean(1), x[..., d:].flip(2).mean(1)
            logits = 0.5 * (self.head(f) + self.head(r))
            return logits, F.cross_entropy(logits, targets)
        W = emb.word_embeddings.weight
        logits = x[..., :d] @ W.t() + x[..., d:].flip(2) @ W[comp].t()       # RCPS LM head
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)


def check_dir(d, dtype):
    return check_seq_dir(d, dtype, "caduceus",
                         ("vocab", "d_model", "n_layer", "d_state", "expand", "dt_rank", "d_conv", "n_classes"), Caduceus)


def main():
    run_cases(check_dir, "caduceus_torch_parity", __doc__)


if __name__ == "__main__":
    main()
