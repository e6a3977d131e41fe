#!/usr/bin/python3
"""vit_torch_parity.py: checks derf's C ViT (src/models/vit.c) against the same model written here
in plain PyTorch (torch.nn; no timm), from the formulas of docs/paper.md sections 1 and 5.1 and timm's
VisionTransformer (pre-norm blocks, qkv with bias, exact or tanh GELU, class token + learned
position embedding, pool 'avg' = mean over the patch tokens then fc_norm, pool 'cls' = final norm
on every token then token 0, linear head).

Usage: /usr/bin/python3 tools/vit_torch_parity.py [--f64] DIR [DIR ...]

Each DIR holds what tests/test_vit.c writes (safetensors, F32):
  params.safetensors  every parameter under its timm state-dict name; __metadata__ = the model
                      config as derf_vit_config_to_meta writes it (model=vit, img, chans, patch, dim,
                      depth, heads, mlp_ratio, classes, pool, norm (canonical spec), gelu, drop_path)
  grads.safetensors   derf's gradient of the mean cross-entropy for every parameter (same names)
  batch.safetensors   images [B,C,img,img], labels [B] (class ids as floats), derf's logits [B,V]
                      and loss [1]
The script loads the parameters into the torch model (names and shapes must match exactly), runs
forward + F.cross_entropy (mean) + backward in float32 (float64 with --f64), and compares the
logits, the loss and EVERY parameter gradient: a tensor passes when
    max|derf - torch| <= ATOL + RTOL * max|torch|      (ATOL 1e-5, RTOL 1e-3; per tensor)
It prints one line per tensor with its max error and exits 0 if all pass, 1 on any mismatch or a
missing/extra tensor, 2 on bad usage or an unsupported config (e.g. a norm spec with transforms).
The model runs in eval mode: the C side writes its outputs with drop path off.
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ATOL, RTOL = 1e-5, 1e-3


def die(msg, code=2):
    print(f"vit_torch_parity: {msg}", file=sys.stderr)
    sys.exit(code)


# ------------------------------------------------------------------------------------ safetensors
def read_safetensors(path):
    """Returns ({name: float32 ndarray}, metadata dict). F32 only (what derf writes)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        die(f"{path}: shorter than 8 bytes", 1)
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > len(raw) - 8:
        die(f"{path}: header length {hlen} beyond the file", 1)
    header = json.loads(raw[8:8 + hlen].decode("utf-8").rstrip(" "))
    data = raw[8 + hlen:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            die(f"{path}: {name}: dtype {info['dtype']} (expected F32)", 1)
        b, e = info["data_offsets"]
        shape = info["shape"]
        n = int(np.prod(shape)) if shape else 1
        if not (0 <= b <= e <= len(data)) or e - b != 4 * n:
            die(f"{path}: {name}: bad data_offsets {info['data_offsets']} for shape {shape}", 1)
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(shape).copy()
    return out, meta


# ------------------------------------------------------------------------------------ norm layers
POINTWISE = {  # docs/paper.md section 3 (the subset this oracle knows)
    "erf": torch.erf,
    "tanh": torch.tanh,
    "arctan": lambda u: (2 / math.pi) * torch.atan(u),
    "isru": lambda u: u / torch.sqrt(1 + u * u),
    "smoothsign": lambda u: u / (1 + torch.abs(u)),
}


def parse_norm(text):
    """Parses the canonical spec string derf_norm_format writes (no transforms here)."""
    head, *opts = text.split(":")
    if "+" in head or "(" in head:
        die(f"norm spec '{text}': transforms are not supported by this oracle")
    s = {"kind": "pointwise", "fn": head, "shift": "scalar", "affine": True, "bias": True,
         "alpha": 0.5, "s": 0.0, "eps": 1e-5}
    if head == "layernorm":
        s["kind"] = "layernorm"
    elif head == "rmsnorm":
        s["kind"], s["bias"] = "rmsnorm", False
    elif head == "derf":
        s["fn"] = "erf"
    elif head == "dyt":
        s["fn"], s["shift"] = "tanh", "none"
    elif head not in POINTWISE:
        die(f"norm spec '{text}': function '{head}' is not known to this oracle ({sorted(POINTWISE)})")
    for o in opts:
        k, _, v = o.partition("=")
        if k == "noshift":
            s["shift"] = "none"
        elif k == "shift":
            s["shift"] = v
        elif k == "noaffine":
            s["affine"], s["bias"] = False, False
        elif k == "nobias":
            s["bias"] = False
        elif k == "bias":
            s["bias"] = True
        elif k == "alpha":
            s["alpha"] = float(v)
        elif k == "s":
            s["s"] = float(v)
            if s["shift"] == "none":
                s["shift"] = "scalar"
        elif k == "eps":
            s["eps"] = float(v)
        else:
            die(f"norm spec '{text}': unknown option '{k}'")
    return s


class PointwiseNorm(nn.Module):
    """y = weight * f(alpha * x + shift) + bias (docs/paper.md section 1); DyT has no shift."""

    def __init__(self, spec, C):
        super().__init__()
        self.f = POINTWISE[spec["fn"]]
        self.alpha = nn.Parameter(torch.full((1,), spec["alpha"]))
        if spec["shift"] == "scalar":
            self.shift = nn.Parameter(torch.full((1,), spec["s"]))
        elif spec["shift"] == "channel":
            self.shift = nn.Parameter(torch.full((C,), spec["s"]))
        else:
            self.shift = None
        self.weight = nn.Parameter(torch.ones(C)) if spec["affine"] else None
        self.bias = nn.Parameter(torch.zeros(C)) if spec["affine"] and spec["bias"] else None

    def forward(self, x):
        u = self.alpha * x
        if self.shift is not None:
            u = u + self.shift
        y = self.f(u)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


class RowNorm(nn.Module):
    """LayerNorm or RMSNorm over the last dim, eps inside the square root."""

    def __init__(self, spec, C):
        super().__init__()
        self.ln, self.eps = spec["kind"] == "layernorm", spec["eps"]
        self.weight = nn.Parameter(torch.ones(C)) if spec["affine"] else None
        self.bias = nn.Parameter(torch.zeros(C)) if spec["affine"] and spec["bias"] else None

    def forward(self, x):
        if self.ln:
            x = x - x.mean(-1, keepdim=True)
        y = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


def make_norm(spec, C):
    return PointwiseNorm(spec, C) if spec["kind"] == "pointwise" else RowNorm(spec, C)


# ------------------------------------------------------------------------------------ the ViT
class Attention(nn.Module):
    def __init__(self, D, NH):
        super().__init__()
        self.NH, self.hs = NH, D // NH
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.NH, self.hs).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                          # [B,NH,T,hs]
        att = torch.softmax((q @ k.transpose(-2, -1)) * self.hs ** -0.5, dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
    def __init__(self, D, H, gelu):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(D, H), nn.Linear(H, D)
        self.approx = "tanh" if gelu == "tanh" else "none"

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approx))


class Block(nn.Module):
    def __init__(self, D, NH, H, spec, gelu):
        super().__init__()
        self.norm1, self.attn = make_norm(spec, D), Attention(D, NH)
        self.norm2, self.mlp = make_norm(spec, D), Mlp(D, H, gelu)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, C, P, D):
        super().__init__()
        self.proj = nn.Conv2d(C, D, kernel_size=P, stride=P)

    def forward(self, img):
        return self.proj(img).flatten(2).transpose(1, 2)         # [B,NP,D], patches row-major


class ViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, spec = cfg["dim"], cfg["norm"]
        NP = (cfg["img"] // cfg["patch"]) ** 2
        self.pool = cfg["pool"]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + NP, D))
        self.patch_embed = PatchEmbed(cfg["chans"], cfg["patch"], D)
        self.blocks = nn.ModuleList(
            [Block(D, cfg["heads"], cfg["mlp_ratio"] * D, spec, cfg["gelu"]) for _ in range(cfg["depth"])])
        if self.pool == "avg":
            self.fc_norm = make_norm(spec, D)
        else:
            self.norm = make_norm(spec, D)
        self.head = nn.Linear(D, cfg["classes"])

    def forward(self, img):
        x = self.patch_embed(img)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        if self.pool == "avg":
            x = self.fc_norm(x[:, 1:].mean(dim=1))               # class token excluded (timm)
        else:
            x = self.norm(x)[:, 0]
        return self.head(x)


def config_from_meta(meta):
    if meta.get("model") != "vit":
        die(f"params metadata: model is {meta.get('model')!r}, not 'vit'")
    try:
        cfg = {k: int(meta[k]) for k in ("img", "chans", "patch", "dim", "depth", "heads", "mlp_ratio", "classes")}
        cfg["pool"], cfg["gelu"] = meta["pool"], meta["gelu"]
        cfg["norm"] = parse_norm(meta["norm"])
    except KeyError as e:
        die(f"params metadata: missing key {e}")
    if cfg["pool"] not in ("avg", "cls") or cfg["gelu"] not in ("erf", "tanh"):
        die(f"params metadata: bad pool/gelu {cfg['pool']!r}/{cfg['gelu']!r}")
    return cfg


# ------------------------------------------------------------------------------------ the check
def compare(name, ours, ref):
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        print(f"FAIL {name}: shape {list(ours.shape)} vs torch {list(ref.shape)}")
        return False, 0.0
    err = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    ok = bool(np.isfinite(ours).all()) and err <= ATOL + RTOL * scale
    rel = err / scale if scale > 0 else err
    print(f"{'ok  ' if ok else 'FAIL'} {name:36s} max|err| {err:.3e}  max|ref| {scale:.3e}  rel {rel:.2e}")
    return ok, rel


def check_dir(d, dtype):
    params, meta = read_safetensors(f"{d}/params.safetensors")
    grads, _ = read_safetensors(f"{d}/grads.safetensors")
    batch, _ = read_safetensors(f"{d}/batch.safetensors")
    cfg = config_from_meta(meta)
    print(f"== {d}: norm {meta['norm']} pool {cfg['pool']} gelu {cfg['gelu']} dim {cfg['dim']} "
          f"depth {cfg['depth']} heads {cfg['heads']} B {batch['images'].shape[0]} ({dtype})")
    torch.manual_seed(0)
    model = ViT(cfg)
    sd = model.state_dict()
    ok = True
    missing = sorted(set(sd) - set(params))
    extra = sorted(set(params) - set(sd))
    if missing or extra:
        print(f"FAIL tensor names: missing in derf {missing}, not in the torch model {extra}")
        return False, 0.0
    if list(params) != list(sd):
        print("note: derf's tensor order differs from the torch state dict (harmless)")
    for name, t in sd.items():
        if list(t.shape) != list(params[name].shape):
            print(f"FAIL {name}: derf shape {list(params[name].shape)} vs torch {list(t.shape)}")
            ok = False
    if not ok:
        return False, 0.0
    model.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    model = model.to(dtype)
    model.eval()
    images = torch.from_numpy(batch["images"]).to(dtype)
    labels = torch.from_numpy(batch["labels"]).long()
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    return compare_outputs_and_grads([("logits", batch["logits"], logits), ("loss", batch["loss"], loss)],
                                     model, grads)


def compare_outputs_and_grads(outputs, model, grads):
    """outputs: (name, derf's array, torch tensor) after backward; then every parameter's gradient against
    grads (derf's, by name). Returns (ok, worst relative error)."""
    ok, worst = True, 0.0
    for name, ours, ref in outputs:
        ref = ref.detach().numpy()
        good, rel = compare(name, np.asarray(ours).reshape(ref.shape), ref)
        ok &= good
        worst = max(worst, rel)
    named = dict(model.named_parameters())
    for name, p in named.items():
        if name not in grads:
            print(f"FAIL {name}: no gradient in grads.safetensors")
            ok = False
            continue
        good, rel = compare("grad " + name, grads[name], p.grad.numpy())
        ok &= good
        worst = max(worst, rel)
    if set(grads) != set(named):
        print(f"FAIL grads.safetensors names differ: {sorted(set(grads) ^ set(named))}")
        ok = False
    return ok, worst


def run_cases(check, tool, doc):
    """The command line every *_torch_parity.py shares: [--f64] DIR..., check(dir, dtype) -> (ok, worst)."""
    args = sys.argv[1:]
    dtype = torch.float32
    if args and args[0] == "--f64":
        dtype, args = torch.float64, args[1:]
    if not args or any(a.startswith("-") for a in args):
        print(doc, file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    all_ok, worst = True, 0.0
    for d in args:
        ok, w = check(d, dtype)
        all_ok &= ok
        worst = max(worst, w)
    print(f"{tool}: {'PASS' if all_ok else 'FAIL'} ({len(args)} case(s), worst relative error {worst:.2e})")
    sys.exit(0 if all_ok else 1)


def main():
    run_cases(check_dir, "vit_torch_parity", __doc__)


if __name__ == "__main__":
    main()
