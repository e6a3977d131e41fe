#!/usr/bin/python3
"""dit_torch_parity.py: checks derf's C DiT (src/models/dit.c) against the same model written here in
plain PyTorch, following facebookresearch/DiT models.py (TimestepEmbedder, LabelEmbedder, adaLN-Zero
DiTBlock, FinalLayer, unpatchify, get_2d_sincos_pos_embed) with the norm replaced by the spec's layer
without affine (docs/paper.md section 5.2). Norm layers, attention, MLP and the safetensors reader come from
vit_torch_parity.py beside this file.

Usage: /usr/bin/python3 tools/dit_torch_parity.py [--f64] DIR [DIR ...]

Each DIR holds what tests/test_dit.c writes (safetensors, F32):
  params.safetensors  every parameter under DiT's state-dict name (pos_embed excluded: fixed); metadata =
                      derf_dit_config_to_meta (model=dit, img, chans, patch, dim, depth, heads, mlp_ratio,
                      classes, freq_dim, learn_sigma, norm, ...)
  grads.safetensors   derf's gradient of the loss for every parameter
  batch.safetensors   x [B,C,H,W], t [B] (timesteps), y [B] (labels as floats; classes = null label),
                      target [B,OC,H,W], derf's out [B,OC,H,W] and loss [1] = mean((out - target)^2)
Compares out, loss and every gradient: max|derf - torch| <= ATOL + RTOL * max|torch| per tensor.
Exit 0 if all pass, 1 on a mismatch, 2 on bad usage or an unsupported config.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_torch_parity as vp  # noqa: E402


# ------------------------------------------------------------------------------------ DiT pieces
def get_1d_sincos(D, pos):
    omega = np.arange(D // 2, dtype=np.float64) / (D / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(D, g):
    gh = np.arange(g, dtype=np.float32)
    gw = np.arange(g, dtype=np.float32)
    grid = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, g, g)
    emb_h = get_1d_sincos(D // 2, grid[0])
    emb_w = get_1d_sincos(D // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, D, F):
        super().__init__()
        self.F = F
        self.mlp = nn.Sequential(nn.Linear(F, D), nn.SiLU(), nn.Linear(D, D))

    def forward(self, t):
        half = self.F // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    def __init__(self, classes, D):
        super().__init__()
        self.embedding_table = nn.Embedding(classes + 1, D)

    def forward(self, y):
        return self.embedding_table(y)


class Block(nn.Module):
    def __init__(self, D, NH, H, spec):
        super().__init__()
        self.norm1, self.attn = vp.make_norm(spec, D), vp.Attention(D, NH)
        self.norm2, self.mlp = vp.make_norm(spec, D), vp.Mlp(D, H, "tanh")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c):
        sm, cm, gm, sf, cf, gf = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gm.unsqueeze(1) * self.attn(modulate(self.norm1(x), sm, cm))
        return x + gf.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sf, cf))


class FinalLayer(nn.Module):
    def __init__(self, D, P, OC, spec):
        super().__init__()
        self.norm_final = vp.make_norm(spec, D)
        self.linear = nn.Linear(D, P * P * OC)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, P, spec = cfg["dim"], cfg["patch"], cfg["norm"]
        self.P, self.C = P, cfg["chans"]
        self.OC = 2 * self.C if cfg["learn_sigma"] else self.C
        self.g = cfg["img"] // P
        self.x_embedder = vp.PatchEmbed(self.C, P, D)
        self.t_embedder = TimestepEmbedder(D, cfg["freq_dim"])
        self.y_embedder = LabelEmbedder(cfg["classes"], D)
        self.register_buffer("pos_embed", torch.from_numpy(get_2d_sincos_pos_embed(D, self.g)).float().unsqueeze(0),
                             persistent=False)
        self.blocks = nn.ModuleList([Block(D, cfg["heads"], cfg["mlp_ratio"] * D, spec) for _ in range(cfg["depth"])])
        self.final_layer = FinalLayer(D, P, self.OC, spec)

    def unpatchify(self, x):
        p, g, c = self.P, self.g, self.OC
        x = x.reshape(x.shape[0], g, g, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, g * p, g * p)

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed.to(x.dtype)
        c = self.t_embedder(t) + self.y_embedder(y)
        for blk in self.blocks:
            x = blk(x, c)
        return self.unpatchify(self.final_layer(x, c))


def config_from_meta(meta):
    if meta.get("model") != "dit":
        vp.die(f"params metadata: model is {meta.get('model')!r}, not 'dit'")
    try:
        cfg = {k: int(meta[k]) for k in ("img", "chans", "patch", "dim", "depth", "heads", "mlp_ratio", "classes",
                                         "freq_dim", "learn_sigma")}
        cfg["norm"] = vp.parse_norm(meta["norm"])
    except KeyError as e:
        vp.die(f"params metadata: missing key {e}")
    return cfg


def check_dir(d, dtype):
    params, meta = vp.read_safetensors(f"{d}/params.safetensors")
    grads, _ = vp.read_safetensors(f"{d}/grads.safetensors")
    batch, _ = vp.read_safetensors(f"{d}/batch.safetensors")
    cfg = config_from_meta(meta)
    print(f"== {d}: norm {meta['norm']} dim {cfg['dim']} depth {cfg['depth']} heads {cfg['heads']} "
          f"patch {cfg['patch']} learn_sigma {cfg['learn_sigma']} B {batch['x'].shape[0]} ({dtype})")
    model = DiT(cfg)
    sd = model.state_dict()
    missing, extra = sorted(set(sd) - set(params)), sorted(set(params) - set(sd))
    if missing or extra:
        print(f"FAIL tensor names: missing in derf {missing}, not in the torch model {extra}")
        return False, 0.0
    for name, t in sd.items():
        if list(t.shape) != list(params[name].shape):
            print(f"FAIL {name}: derf shape {list(params[name].shape)} vs torch {list(t.shape)}")
            return False, 0.0
    model.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    model = model.to(dtype)
    x = torch.from_numpy(batch["x"]).to(dtype)
    t = torch.from_numpy(batch["t"]).to(torch.float32)
    y = torch.from_numpy(batch["y"]).long()
    target = torch.from_numpy(batch["target"]).to(dtype)
    out = model(x, t, y)
    loss = ((out - target) ** 2).mean()
    loss.backward()
    return vp.compare_outputs_and_grads([("out", batch["out"], out), ("loss", batch["loss"], loss)], model, grads)


def main():
    vp.run_cases(check_dir, "dit_torch_parity", __doc__)


if __name__ == "__main__":
    main()
