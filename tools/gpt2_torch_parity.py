#!/usr/bin/python3
"""gpt2_torch_parity.py: checks derf's C GPT-2 (src/models/gpt2.c) against the same model written here
in plain PyTorch (torch.nn; no transformers package), from nanoGPT's model.py and the Derf GPT-2 patch
as docs/paper.md sections 1 and 5.3 describe them: tied wte / LM head, learned wpe, pre-norm blocks
(ln_1, causal attention c_attn + c_proj, ln_2, MLP c_fc + tanh GELU + c_proj), ln_f; with a point-wise
norm a learnable scalar shared_scale multiplies (token emb + pos emb).

Usage: /usr/bin/python3 tools/gpt2_torch_parity.py [--f64] DIR [DIR ...]

Each DIR holds what tests/test_gpt2.c writes (safetensors, F32):
  params.safetensors  every parameter under its HF GPT2Model name (Linear weights in nn.Linear
                      layout [out,in], NOT HF Conv1D's [in,out]); __metadata__ = the model config as
                      derf_gpt2_config_to_meta writes it (model=gpt2, vocab, block_size, n_layer,
                      n_head, n_embd, bias, norm, shared_scale, attn_alpha, ffn_alpha, final_alpha)
  grads.safetensors   derf's gradient of the mean cross-entropy for every parameter (same names)
  batch.safetensors   tokens [B,T] and targets [B,T] (ids as floats; target -1 = ignored), derf's
                      logits [B,T,V] and loss [1]; optionally a short AdamW run from the same
                      parameters: steps_tokens / steps_targets [S,B,T], derf's per-step loss
                      steps_loss [S] (before each update) and pre-clip gradient norm steps_gnorm [S],
                      with lr, beta1, beta2, eps, weight_decay, clip in __metadata__.
The script loads the parameters (names and shapes must match exactly), runs forward +
F.cross_entropy(ignore_index=-1) + backward in float32 (float64 with --f64), and compares the logits,
the loss and EVERY parameter gradient: a tensor passes when
    max|derf - torch| <= ATOL + RTOL * max|torch|      (ATOL 1e-5, RTOL 1e-3; per tensor)
For the AdamW run it uses torch.optim.AdamW with two groups (weight decay on the >= 2-D tensors,
nanoGPT's rule; none on biases, norm parameters and shared_scale) and
torch.nn.utils.clip_grad_norm_, and compares every step's loss and pre-clip gradient norm (same
tolerance, and also max|err| <= 1e-4 * max|torch|).
It prints one line per tensor and exits 0 if all pass, 1 on any mismatch or a missing/extra tensor,
2 on bad usage or an unsupported config.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# the safetensors reader, the norm layers and the per-tensor comparison are shared with the ViT check
from vit_torch_parity import (compare, compare_outputs_and_grads, make_norm, parse_norm,  # noqa: E402
                              read_safetensors, run_cases)


STEP_RTOL = 1e-4   # the AdamW run's per-step losses and gradient norms: max|err| <= STEP_RTOL * max|torch|


def die(msg, code=2):
    print(f"gpt2_torch_parity: {msg}", file=sys.stderr)
    sys.exit(code)


# ------------------------------------------------------------------------------------ the GPT-2
class CausalSelfAttention(nn.Module):
    def __init__(self, C, NH, bias, T):
        super().__init__()
        self.NH, self.hs = NH, C // NH
        self.c_attn = nn.Linear(C, 3 * C, bias=bias)
        self.c_proj = nn.Linear(C, C, bias=bias)
        self.register_buffer("mask", torch.tril(torch.ones(T, T, dtype=torch.bool)), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, self.hs).transpose(1, 2) for t in (q, k, v))   # [B,NH,T,hs]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hs))
        att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
        att = torch.softmax(att, dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, C, bias):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C, bias=bias)
        self.c_proj = nn.Linear(4 * C, C, bias=bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, spec = cfg["n_embd"], cfg["norm"]
        self.ln_1 = make_norm(spec, C)
        self.attn = CausalSelfAttention(C, cfg["n_head"], cfg["bias"], cfg["block_size"])
        self.ln_2 = make_norm(spec, C)
        self.mlp = MLP(C, cfg["bias"])

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg["n_embd"]
        self.wte = nn.Embedding(cfg["vocab"], C)
        self.wpe = nn.Embedding(cfg["block_size"], C)
        # the Derf patch's learnable embedding multiplier (docs/paper.md section 5.3)
        self.shared_scale = nn.Parameter(torch.full((1,), math.sqrt(C))) if cfg["shared_scale"] else None
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])])
        self.ln_f = make_norm(cfg["norm"], C)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        if self.shared_scale is not None:
            x = self.shared_scale * x
        for blk in self.h:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)          # tied LM head
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss


def config_from_meta(meta):
    if meta.get("model") != "gpt2":
        die(f"params metadata: model is {meta.get('model')!r}, not 'gpt2'")
    try:
        cfg = {k: int(meta[k]) for k in ("vocab", "block_size", "n_layer", "n_head", "n_embd", "bias",
                                         "shared_scale")}
        cfg["norm"] = parse_norm(meta["norm"])
    except KeyError as e:
        die(f"params metadata: missing key {e}")
    cfg["bias"], cfg["shared_scale"] = bool(cfg["bias"]), bool(cfg["shared_scale"])
    return cfg


def load_model(cfg, params, dtype):
    torch.manual_seed(0)
    model = GPT(cfg)
    sd = model.state_dict()
    missing = sorted(set(sd) - set(params))
    extra = sorted(set(params) - set(sd))
    if missing or extra:
        print(f"FAIL tensor names: missing in derf {missing}, not in the torch model {extra}")
        return None
    if list(params) != list(sd):
        print("note: derf's tensor order differs from the torch state dict (harmless)")
    ok = True
    for name, t in sd.items():
        if list(t.shape) != list(params[name].shape):
            print(f"FAIL {name}: derf shape {list(params[name].shape)} vs torch {list(t.shape)}")
            ok = False
    if not ok:
        return None
    model.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    return model.to(dtype)


def ids(a):
    return torch.from_numpy(np.asarray(a)).round().long()


# ------------------------------------------------------------------------------------ the check
def check_dir(d, dtype):
    params, meta = read_safetensors(f"{d}/params.safetensors")
    grads, _ = read_safetensors(f"{d}/grads.safetensors")
    batch, bmeta = read_safetensors(f"{d}/batch.safetensors")
    cfg = config_from_meta(meta)
    B, T = batch["tokens"].shape
    print(f"== {d}: norm {meta['norm']} bias {int(cfg['bias'])} shared_scale {int(cfg['shared_scale'])} "
          f"V {cfg['vocab']} C {cfg['n_embd']} L {cfg['n_layer']} NH {cfg['n_head']} B {B} T {T} ({dtype})")
    model = load_model(cfg, params, dtype)
    if model is None:
        return False, 0.0
    tokens, targets = ids(batch["tokens"]), ids(batch["targets"])
    logits, loss = model(tokens, targets)
    loss.backward()
    ok, worst = compare_outputs_and_grads([("logits", batch["logits"], logits), ("loss", batch["loss"], loss)],
                                          model, grads)

    if "steps_loss" in batch:                       # the AdamW run, from the same starting parameters
        model = load_model(cfg, params, dtype)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        nodecay = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(bmeta["weight_decay"])},
                                 {"params": nodecay, "weight_decay": 0.0}],
                                lr=float(bmeta["lr"]), betas=(float(bmeta["beta1"]), float(bmeta["beta2"])),
                                eps=float(bmeta["eps"]))
        clip = float(bmeta["clip"])
        losses, norms = [], []
        for k in range(batch["steps_loss"].shape[0]):
            opt.zero_grad(set_to_none=True)
            _, l = model(ids(batch["steps_tokens"][k]), ids(batch["steps_targets"][k]))
            l.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)))
            losses.append(float(l))
            opt.step()
        print(f"   AdamW {len(losses)} steps: torch losses {' '.join(f'{x:.5f}' for x in losses)}")
        print(f"   pre-clip grad norms {' '.join(f'{x:.4f}' for x in norms)} (clip {clip:g})")
        for name, ours, ref in [("adamw step losses", batch["steps_loss"], np.array(losses)),
                                ("adamw step grad norms", batch["steps_gnorm"], np.array(norms))]:
            good, rel = compare(name, ours, ref)
            err = float(np.max(np.abs(np.asarray(ours, np.float64) - ref)))
            if good and err > STEP_RTOL * float(np.max(np.abs(ref))):   # scalars: a tighter bound
                print(f"FAIL {name}: max|err| {err:.3e} above {STEP_RTOL:g} relative")
                good = False
            ok &= good
            worst = max(worst, rel)
    return ok, worst


def main():
    run_cases(check_dir, "gpt2_torch_parity", __doc__)


if __name__ == "__main__":
    main()
