#!/usr/bin/python3
"""torch_ref.py: a live PyTorch reference ("oracle") for the derf C test suite.

Started by tests/torch_oracle.c as `/usr/bin/python3 tools/torch_ref.py`, it reads requests on
stdin and answers on stdout, strictly one reply per request. Everything is plain PyTorch autograd in
float32, written from the formulas in the paper notes (docs/paper.md sections 1-4),
not from the C code.

Protocol (binary-safe; all numbers little-endian):
  On start the oracle writes one line:  "ready torch=<version>\n"  (or "notorch <why>\n" and exits 3).
  Request:  one text line  "<op> key=value key=value ... arrays=name:T:count,name:T:count\n"
            followed by the raw payloads of the listed arrays, in the listed order.
            T is f (float32) or i (int32); count is the number of elements (0 allowed; then the
            array is absent). `arrays=` may be omitted when there are none. Values contain no spaces.
  Reply:    "ok name:T:count,name:T:count,...\n" followed by the payloads in that order, or
            "err <one-line message>\n" with no payload. After an err reply the oracle keeps serving
            (the request payload was consumed first) unless the header itself could not be parsed,
            in which case it exits after replying (the stream is out of sync).
  "quit" ends the process; "ping" answers "ok " with no arrays.

Ops (inputs -> outputs; "d<name>" is the gradient w.r.t. input <name> for upstream gradient dy/dout):
  pointwise fn=NAME tf=KIND:L,KIND:L,... shift=none|scalar|channel affine=0|1 bias=0|1 N= C=
      x[N*C] alpha[1] s[0|1|C] gamma[C|0] beta[C|0] dy[N*C]
      -> y dx dalpha ds dgamma dbeta margin[N*C]
      y = gamma * g(alpha*x + s) + beta, g = transforms (in order) over the base NAME.
      margin: float64 distance of each element's argument (or, for clip, of |g|) from the nearest
      point where g is not differentiable, over the whole transform chain (the caller resamples
      inputs with a small margin, since one-sided derivatives are a free choice there).
  layernorm eps= N= C=           x weight bias dy -> y dx dweight dbias
  rmsnorm eps= N= C=             x weight [bias] dy -> y dx dweight dbias
  linear N= C= OC=               inp w [b] dout -> out dinp dw db
  gelu kind=tanh|erf             inp dout -> out dinp
  attention B= T= C= NH= causal= qkv dout -> out att dqkv
  embed B= T= C=                 tok(i) wte[V*C] [wpe[Tmax*C]] dout -> out dwte dwpe
  add_pos B= T= C=               x pos dout -> out dx dpos
  patch_embed B= Cin= H= W= P= D= img w b dout -> out dw db
  xent N= V= smoothing= scale=   logits targets(i) -> loss[1] dlogits   (targets < 0: ignored rows)
  xent_soft N= V= scale=         logits q -> loss[1] dlogits
  mask_mul                       inp mask dout -> out dinp                (dropout)
  drop_path B=                   x keep[B] dout -> out dx
  residual                       a b dout -> out da db
  mean_pool B= T= T0= C=         x dout -> out dx
  conv1d B= T= Cin= Cout= K= S= P= G= To=   x[B*T*Cin] w[Cout*(Cin/G)*K] [b] dy[B*To*Cout] -> y dx dw db
      F.conv1d on channels-last data (transposed in and out); only the first To output frames are kept.
  groupnorm B= T= C= G= eps=     x[B*T*C] gamma beta dy -> y dx dgamma dbeta        (F.group_norm)
  weight_norm R= K=              v[R*K] g[K] dw -> w dv dg          (torch._weight_norm over all but the last axis)
  gumbel N= G= V= Dv= tau= train=0|1  l[N*G*V] u[N*G*V] cb[G*V*Dv] dq -> q idx(f) dl dcb
      fairseq's hard gumbel_softmax with the noise -log(-log u) given: y = hard - soft.detach() + soft;
      train=0: argmax of l, no noise, no gradient into l.
  diversity N= G= V= scale=      l -> loss[1] ppl[1] dl    (p = mean softmax; (GV - sum_g exp(H(p_g)))/GV)
  infonce M= F= K= G= temp= scale=  c[M*F] q[M*F] codes(i)[M*G] neg(i)[M*K] -> loss[1] logits[M*(K+1)] dc dq correct[1]
      fairseq Wav2Vec2Model.compute_preds + the wav2vec criterion: cosine logits / temp, -inf where a
      negative has the positive's quantizer codes in every group (fairseq: equal target vectors, which equal
      codes give), cross-entropy summed over rows, accuracy = argmax 0 and not argmin 0.

`python3 tools/torch_ref.py --selftest [--quiet]` checks the autograd graphs with torch.autograd.gradcheck in
float64 and a few closed-form values, then exits 0 on success.
"""
import math
import sys
import traceback

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except Exception as e:  # torch (or numpy) missing: say so on the first line and stop
    sys.stdout.write("notorch %s\n" % str(e).replace("\n", " "))
    sys.stdout.flush()
    sys.exit(3)

DT = torch.float32
PI = math.pi

# ----------------------------------------------------------------------------------------------
# Base point-wise functions (docs/paper.md sections 3 and 4). Each takes a
# tensor u and returns f(u) built from differentiable torch ops, so autograd gives f'.

def _sgn(u):
    return torch.sign(u)


BASE = {
    "erf": lambda u: torch.erf(u),
    "tanh": lambda u: torch.tanh(u),
    "satursin": lambda u: torch.sin(torch.clamp(u, -PI / 2, PI / 2)),
    "arcsinhclip": lambda u: torch.clamp(torch.asinh(u), -1.0, 1.0),
    "isru": lambda u: u / torch.sqrt(1 + u * u),
    "exproot": lambda u: _sgn(u) * (1 - torch.exp(-torch.sqrt(torch.abs(u)))),
    "linearclip": lambda u: torch.clamp(u, -1.0, 1.0),
    "expsign": lambda u: -_sgn(u) * (torch.exp(-torch.abs(u)) - 1),
    "logsignclip": lambda u: torch.clamp(_sgn(u) * torch.log1p(torch.abs(u)), -1.0, 1.0),
    "relsign": lambda u: u / (torch.sqrt(u * u + 1) + 1),
    "arctan": lambda u: (2 / PI) * torch.atan(u),
    "smoothsign": lambda u: u / (1 + torch.abs(u)),
    "logquadclip": lambda u: torch.clamp(_sgn(u) * torch.log1p(u * u), -1.0, 1.0),
    "power23clip": lambda u: torch.clamp(_sgn(u) * torch.pow(torch.abs(u), 2.0 / 3.0), -1.0, 1.0),
    "saturlog": lambda u: _saturlog(u),
    "cubsign": lambda u: u ** 3 / (torch.abs(u) ** 3 + 1),
    "arcsinh": lambda u: torch.asinh(u),
    "logsign": lambda u: _sgn(u) * torch.log1p(torch.abs(u)),
    "logquad": lambda u: _sgn(u) * torch.log1p(u * u),
    "power23": lambda u: _sgn(u) * torch.pow(torch.abs(u), 2.0 / 3.0),
    "linear": lambda u: u,
    "sin": lambda u: torch.sin(u),
    "dampx": lambda u: 2 * u / (1 + u * u),
    "dampexp": lambda u: math.e * u * torch.exp(-torch.abs(u)),
}


def _saturlog(u):
    L = torch.log1p(torch.abs(u))
    return _sgn(u) * L / (L + 1)


# Points (in the base function's argument) where f' jumps or is infinite. 0 is listed for every
# sign()/abs()-built form: autograd takes d|u|/du = sign(0) = 0 there, a one-sided choice.
_SQE = math.sqrt(math.e - 1)
BASE_KINKS = {
    "erf": [], "tanh": [], "isru": [], "relsign": [], "arctan": [], "arcsinh": [], "linear": [],
    "sin": [], "dampx": [],
    "satursin": [PI / 2],
    "arcsinhclip": [math.sinh(1.0)],
    "exproot": [0.0],
    "linearclip": [1.0],
    "expsign": [0.0],
    "logsignclip": [0.0, math.e - 1],
    "smoothsign": [0.0],
    "logquadclip": [0.0, _SQE],
    "power23clip": [0.0, 1.0],
    "saturlog": [0.0],
    "cubsign": [0.0],
    "logsign": [0.0],
    "logquad": [0.0],
    "power23": [0.0],
    "dampexp": [0.0],
}
assert set(BASE_KINKS) == set(BASE)

TF_KINDS = ("hshift", "vshift", "clip", "mix", "flat", "neg")


def parse_tf(text):
    out = []
    if not text:
        return out
    for item in text.split(","):
        if not item:
            continue
        if ":" in item:
            k, l = item.split(":", 1)
            l = float(l)
        else:
            k, l = item, 0.0
        if k not in TF_KINDS:
            raise ValueError("unknown transform %r (known: %s)" % (k, " ".join(TF_KINDS)))
        out.append((k, l))
    return out


def compose(fn, tfs):
    """g(u) = tfs[-1](...tfs[0](base)) as a torch function of a tensor."""
    if fn not in BASE:
        raise ValueError("unknown fn %r (known: %s)" % (fn, " ".join(BASE)))
    g = BASE[fn]
    for kind, l in tfs:
        g = _wrap(g, kind, l)
    return g


def _wrap(g, kind, l):
    if kind == "hshift":
        return lambda u: g(u + l)
    if kind == "vshift":
        return lambda u: g(u) + l
    if kind == "clip":
        return lambda u: torch.clamp(g(u), -l, l)
    if kind == "mix":
        return lambda u: (1 - l) * g(u) + l * u
    if kind == "neg":
        return lambda u: -g(u)
    if kind == "flat":
        def flat(u):
            inner = torch.abs(u) <= l
            v = u - l * torch.sign(u)
            # evaluate g only on the outer elements: inner ones get a harmless stand-in argument
            # so that a non-finite g' there (e.g. exproot at 0) cannot leak in as 0*inf = NaN.
            v = torch.where(inner, torch.full_like(v, 0.5), v)
            return torch.where(inner, torch.zeros_like(v), g(v))
        return flat
    raise ValueError("unknown transform %r" % kind)


def margins(fn, tfs, u):
    """float64 numpy: per element, distance from the nearest non-differentiable point of the chain."""
    g64 = compose(fn, [])  # base only, evaluated on float64 tensors

    def rec(k, v):
        # returns (value, margin) of the function built from the base and tfs[:k], at v (float64 arrays)
        if k == 0:
            m = np.full(v.shape, np.inf)
            for p in BASE_KINKS[fn]:
                m = np.minimum(m, np.abs(np.abs(v) - p))
            val = g64(torch.from_numpy(v)).numpy()
            return val, m
        kind, l = tfs[k - 1]
        if kind == "hshift":
            return rec(k - 1, v + l)
        if kind == "vshift":
            val, m = rec(k - 1, v)
            return val + l, m
        if kind == "clip":
            val, m = rec(k - 1, v)
            return np.clip(val, -l, l), np.minimum(m, np.abs(np.abs(val) - l))
        if kind == "mix":
            val, m = rec(k - 1, v)
            return (1 - l) * val + l * v, m
        if kind == "neg":
            val, m = rec(k - 1, v)
            return -val, m
        if kind == "flat":
            inner = np.abs(v) <= l
            w = np.where(inner, 0.5, v - l * np.sign(v))
            val, m = rec(k - 1, w)
            val = np.where(inner, 0.0, val)
            m = np.where(inner, np.inf, m)
            return val, np.minimum(m, np.abs(np.abs(v) - l))
        raise ValueError(kind)

    _, m = rec(len(tfs), np.asarray(u, dtype=np.float64))
    return np.minimum(m, 1e30)


# ----------------------------------------------------------------------------------------------
# Ops. Each takes (params dict, arrays dict of float32/int32 tensors) and returns a list of
# (name, tensor) outputs. Gradients come from autograd on sum(out * dout).

def _leaf(t):
    return t.detach().clone().to(DT).requires_grad_(True)


def _grad(t, shape_if_none):
    if t is None:
        return torch.zeros(0, dtype=DT)
    if t.grad is None:
        return torch.zeros(shape_if_none, dtype=DT)
    return t.grad


def _opt(A, name):
    t = A.get(name)
    return t if t is not None and t.numel() > 0 else None


def op_pointwise(P, A):
    fn = P["fn"]
    tfs = parse_tf(P.get("tf", ""))
    N, C = int(P["N"]), int(P["C"])
    shift = P.get("shift", "scalar")
    affine = int(P.get("affine", "1"))
    bias = int(P.get("bias", "1")) if affine else 0
    x = _leaf(A["x"].view(N, C))
    alpha = _leaf(A["alpha"].view(1))
    s = gamma = beta = None
    if shift == "scalar":
        s = _leaf(A["s"].view(1))
    elif shift == "channel":
        s = _leaf(A["s"].view(C))
    elif shift != "none":
        raise ValueError("shift must be none, scalar or channel")
    if affine:
        gamma = _leaf(A["gamma"].view(C))
        if bias:
            beta = _leaf(A["beta"].view(C))
    g = compose(fn, tfs)
    u = alpha * x
    if s is not None:
        u = u + s
    y = g(u)
    if gamma is not None:
        y = gamma * y
    if beta is not None:
        y = y + beta
    dy = A["dy"].view(N, C)
    (y * dy).sum().backward()
    m = margins(fn, tfs, u.detach().double().numpy())
    return [("y", y.detach()), ("dx", x.grad), ("dalpha", alpha.grad),
            ("ds", _grad(s, s.shape) if s is not None else _grad(None, 0)),
            ("dgamma", _grad(gamma, (C,)) if gamma is not None else _grad(None, 0)),
            ("dbeta", _grad(beta, (C,)) if beta is not None else _grad(None, 0)),
            ("margin", torch.from_numpy(m.astype(np.float32)))]


def op_layernorm(P, A):
    N, C, eps = int(P["N"]), int(P["C"]), float(P["eps"])
    x = _leaf(A["x"].view(N, C))
    w = _leaf(A["weight"].view(C))
    b = _leaf(A["bias"].view(C))
    y = F.layer_norm(x, (C,), w, b, eps)
    (y * A["dy"].view(N, C)).sum().backward()
    return [("y", y.detach()), ("dx", x.grad), ("dweight", w.grad), ("dbias", b.grad)]


def rmsnorm(x, w, b, eps):
    y = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w
    return y + b if b is not None else y


def op_rmsnorm(P, A):
    N, C, eps = int(P["N"]), int(P["C"]), float(P["eps"])
    x = _leaf(A["x"].view(N, C))
    w = _leaf(A["weight"].view(C))
    b = _opt(A, "bias")
    b = _leaf(b.view(C)) if b is not None else None
    y = rmsnorm(x, w, b, eps)
    (y * A["dy"].view(N, C)).sum().backward()
    return [("y", y.detach()), ("dx", x.grad), ("dweight", w.grad), ("dbias", _grad(b, (C,)))]


def op_linear(P, A):
    N, C, OC = int(P["N"]), int(P["C"]), int(P["OC"])
    x = _leaf(A["inp"].view(N, C))
    w = _leaf(A["w"].view(OC, C))
    b = _opt(A, "b")
    b = _leaf(b.view(OC)) if b is not None else None
    out = F.linear(x, w, b)
    (out * A["dout"].view(N, OC)).sum().backward()
    return [("out", out.detach()), ("dinp", x.grad), ("dw", w.grad), ("db", _grad(b, (OC,)))]


def op_gelu(P, A):
    kind = P.get("kind", "tanh")
    if kind not in ("tanh", "erf"):
        raise ValueError("gelu kind must be tanh or erf")
    x = _leaf(A["inp"])
    out = F.gelu(x, approximate="tanh" if kind == "tanh" else "none")
    (out * A["dout"]).sum().backward()
    return [("out", out.detach()), ("dinp", x.grad)]


def attention(qkv, B, T, C, NH, causal):
    hs = C // NH
    q, k, v = qkv.view(B, T, 3 * C).split(C, dim=2)
    q = q.reshape(B, T, NH, hs).transpose(1, 2)  # B NH T hs
    k = k.reshape(B, T, NH, hs).transpose(1, 2)
    v = v.reshape(B, T, NH, hs).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
    if causal:
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
    att = torch.softmax(scores, dim=-1)
    out = torch.matmul(att, v).transpose(1, 2).reshape(B, T, C)
    return out, att


def op_attention(P, A):
    B, T, C, NH = int(P["B"]), int(P["T"]), int(P["C"]), int(P["NH"])
    causal = int(P.get("causal", "0"))
    if C % NH:
        raise ValueError("C must be a multiple of NH")
    qkv = _leaf(A["qkv"].view(B, T, 3 * C))
    out, att = attention(qkv, B, T, C, NH, causal)
    (out * A["dout"].view(B, T, C)).sum().backward()
    return [("out", out.detach()), ("att", att.detach()), ("dqkv", qkv.grad)]


def op_embed(P, A):
    B, T, C = int(P["B"]), int(P["T"]), int(P["C"])
    tok = A["tok"].view(B, T).long()
    wte = _leaf(A["wte"].view(-1, C))
    V = wte.shape[0]
    if tok.numel() and (tok.min() < 0 or tok.max() >= V):
        raise ValueError("token out of range [0,%d)" % V)
    wpe = _opt(A, "wpe")
    wpe = _leaf(wpe.view(-1, C)) if wpe is not None else None
    out = F.embedding(tok, wte)
    if wpe is not None:
        if wpe.shape[0] < T:
            raise ValueError("wpe has fewer than T rows")
        out = out + wpe[:T].unsqueeze(0)
    (out * A["dout"].view(B, T, C)).sum().backward()
    return [("out", out.detach()), ("dwte", wte.grad),
            ("dwpe", _grad(wpe, wpe.shape) if wpe is not None else _grad(None, 0))]


def op_add_pos(P, A):
    B, T, C = int(P["B"]), int(P["T"]), int(P["C"])
    x = _leaf(A["x"].view(B, T, C))
    pos = _leaf(A["pos"].view(T, C))
    out = x + pos.unsqueeze(0)
    (out * A["dout"].view(B, T, C)).sum().backward()
    return [("out", out.detach()), ("dx", x.grad), ("dpos", pos.grad)]


def op_patch_embed(P, A):
    B, Cin, H, W, Pp, D = (int(P[k]) for k in ("B", "Cin", "H", "W", "P", "D"))
    if H % Pp or W % Pp:
        raise ValueError("H and W must be multiples of P")
    img = A["img"].view(B, Cin, H, W)
    w = _leaf(A["w"].view(D, Cin, Pp, Pp))
    b = _leaf(A["b"].view(D))
    out = F.conv2d(img, w, b, stride=Pp)           # B D H/P W/P
    out = out.flatten(2).transpose(1, 2)           # B NP D, patches row-major
    NP = (H // Pp) * (W // Pp)
    (out * A["dout"].view(B, NP, D)).sum().backward()
    return [("out", out.detach().contiguous()), ("dw", w.grad), ("db", b.grad)]


def xent_hard(logits, targets, smoothing):
    """mean over rows with target >= 0 of -sum_v q_v log softmax_v, q = (1-eps) onehot + eps/V."""
    N, V = logits.shape
    valid = targets >= 0
    logp = torch.log_softmax(logits, dim=-1)
    onehot = torch.zeros(N, V, dtype=logits.dtype)
    idx = torch.nonzero(valid).flatten()
    onehot[idx, targets[idx]] = 1.0
    q = (1 - smoothing) * onehot + smoothing / V
    rows = -(q * logp).sum(-1)
    n = int(valid.sum())
    return (rows * valid.to(logits.dtype)).sum() / max(n, 1)


def op_xent(P, A):
    N, V = int(P["N"]), int(P["V"])
    eps, scale = float(P.get("smoothing", "0")), float(P.get("scale", "1"))
    logits = _leaf(A["logits"].view(N, V))
    t = A["targets"].view(N).long()
    if t.numel() and t.max() >= V:
        raise ValueError("target out of range")
    loss = xent_hard(logits, t, eps)
    (loss * scale).backward()
    return [("loss", loss.detach().view(1)), ("dlogits", logits.grad)]


def op_xent_soft(P, A):
    N, V = int(P["N"]), int(P["V"])
    scale = float(P.get("scale", "1"))
    logits = _leaf(A["logits"].view(N, V))
    q = A["q"].view(N, V)
    loss = -(q * torch.log_softmax(logits, -1)).sum(-1).mean()
    (loss * scale).backward()
    return [("loss", loss.detach().view(1)), ("dlogits", logits.grad)]


def op_mask_mul(P, A):
    x = _leaf(A["inp"])
    out = x * A["mask"]
    (out * A["dout"]).sum().backward()
    return [("out", out.detach()), ("dinp", x.grad)]


def op_drop_path(P, A):
    B = int(P["B"])
    x = _leaf(A["x"].view(B, -1))
    out = x * A["keep"].view(B, 1)
    (out * A["dout"].view(B, -1)).sum().backward()
    return [("out", out.detach()), ("dx", x.grad)]


def op_residual(P, A):
    a, b = _leaf(A["a"]), _leaf(A["b"])
    out = a + b
    (out * A["dout"]).sum().backward()
    return [("out", out.detach()), ("da", a.grad), ("db", b.grad)]


def op_mean_pool(P, A):
    B, T, T0, C = int(P["B"]), int(P["T"]), int(P["T0"]), int(P["C"])
    if not 0 <= T0 < T:
        raise ValueError("need 0 <= T0 < T")
    x = _leaf(A["x"].view(B, T, C))
    out = x[:, T0:, :].mean(dim=1)
    (out * A["dout"].view(B, C)).sum().backward()
    return [("out", out.detach()), ("dx", x.grad)]


def op_conv1d(P, A):
    B, T, Cin, Cout, K, S, Pd, G, To = (int(P[k]) for k in ("B", "T", "Cin", "Cout", "K", "S", "P", "G", "To"))
    x = _leaf(A["x"].view(B, T, Cin))
    w = _leaf(A["w"].view(Cout, Cin // G, K))
    b = _opt(A, "b")
    b = _leaf(b.view(Cout)) if b is not None else None
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN's fp32 conv backward misbehaved (see wav2vec parity)
        y = F.conv1d(x.transpose(1, 2), w, b, stride=S, padding=Pd, groups=G)[:, :, :To].transpose(1, 2)
        (y * A["dy"].view(B, To, Cout)).sum().backward()
    return [("y", y.detach().contiguous()), ("dx", x.grad), ("dw", w.grad), ("db", _grad(b, (Cout,)))]


def op_groupnorm(P, A):
    B, T, C, G, eps = int(P["B"]), int(P["T"]), int(P["C"]), int(P["G"]), float(P["eps"])
    x = _leaf(A["x"].view(B, T, C))
    gamma, beta = _leaf(A["gamma"].view(C)), _leaf(A["beta"].view(C))
    y = F.group_norm(x.transpose(1, 2), G, gamma, beta, eps).transpose(1, 2)
    (y * A["dy"].view(B, T, C)).sum().backward()
    return [("y", y.detach().contiguous()), ("dx", x.grad), ("dgamma", gamma.grad), ("dbeta", beta.grad)]


def op_weight_norm(P, A):
    R, K = int(P["R"]), int(P["K"])
    v, g = _leaf(A["v"].view(R, K)), _leaf(A["g"].view(1, K))
    w = torch._weight_norm(v, g, dim=1)
    (w * A["dw"].view(R, K)).sum().backward()
    return [("w", w.detach()), ("dv", v.grad), ("dg", g.grad)]


def op_gumbel(P, A):
    N, G, V, Dv, tau, train = (int(P["N"]), int(P["G"]), int(P["V"]), int(P["Dv"]), float(P["tau"]),
                               int(P["train"]))
    l = _leaf(A["l"].view(N * G, V))
    cb = _leaf(A["cb"].view(1, G * V, Dv))
    if train:
        gumbels = -torch.log(-torch.log(A["u"].view(N * G, V)))
        soft = torch.softmax((l + gumbels) / tau, dim=-1)
        k = soft.argmax(-1)
        hard = torch.zeros_like(soft).scatter_(-1, k.view(-1, 1), 1.0)
        y = hard - soft.detach() + soft
    else:
        k = l.argmax(-1)
        y = torch.zeros_like(l).scatter_(-1, k.view(-1, 1), 1.0)
    y = y.view(N, G * V)
    q = (y.unsqueeze(-1) * cb).view(N, G, V, Dv).sum(-2).view(N, G * Dv)
    (q * A["dq"].view(N, G * Dv)).sum().backward()
    return [("q", q.detach()), ("idx", k.to(DT)), ("dl", _grad(l, (N * G, V))), ("dcb", cb.grad)]


def op_diversity(P, A):
    N, G, V, scale = int(P["N"]), int(P["G"]), int(P["V"]), float(P["scale"])
    l = _leaf(A["l"].view(N, G, V))
    p = torch.softmax(l.double(), dim=-1).mean(0)
    ppl = torch.exp(-torch.sum(p * torch.log(p + 1e-7), dim=-1)).sum()
    loss = (G * V - ppl) / (G * V)
    (loss * scale).backward()
    return [("loss", loss.detach().view(1)), ("ppl", ppl.detach().view(1)), ("dl", l.grad)]


def op_infonce(P, A):
    M, Fd, K, G = int(P["M"]), int(P["F"]), int(P["K"]), int(P["G"])
    temp, scale = float(P["temp"]), float(P["scale"])
    c, q = _leaf(A["c"].view(M, Fd)), _leaf(A["q"].view(M, Fd))
    neg = A["neg"].view(M, K).long()
    codes = A["codes"].view(M, G).long()
    negs = q[neg.view(-1)].view(M, K, Fd).permute(1, 0, 2)          # K M F
    targets = torch.cat([q.unsqueeze(0), negs], dim=0)              # K+1 M F
    logits = torch.cosine_similarity(c.float(), targets.float(), dim=-1) / temp
    # fairseq compares the target vectors; equal targets come from equal codes, and comparing the codes keeps the
    # mask independent of how a BLAS kernel rounds identical rows (see derf_infonce)
    neg_is_pos = (codes.unsqueeze(0) == codes[neg.view(-1)].view(M, K, G).permute(1, 0, 2)).all(-1)
    if neg_is_pos.any():
        logits[1:][neg_is_pos] = float("-inf")
    logits = logits.transpose(0, 1)                                 # M K+1
    loss = F.cross_entropy(logits, torch.zeros(M, dtype=torch.long), reduction="sum")
    (loss * scale).backward()
    mx, mn = logits.argmax(-1) == 0, logits.argmin(-1) == 0
    correct = (mx.sum() - (mx & mn).sum()).to(DT)
    return [("loss", loss.detach().view(1)), ("logits", logits.detach().contiguous()), ("dc", c.grad),
            ("dq", q.grad), ("correct", correct.view(1))]


OPS = {
    "pointwise": op_pointwise, "layernorm": op_layernorm, "rmsnorm": op_rmsnorm,
    "linear": op_linear, "gelu": op_gelu, "attention": op_attention, "embed": op_embed,
    "add_pos": op_add_pos, "patch_embed": op_patch_embed, "xent": op_xent,
    "xent_soft": op_xent_soft, "mask_mul": op_mask_mul, "drop_path": op_drop_path,
    "residual": op_residual, "mean_pool": op_mean_pool, "conv1d": op_conv1d, "groupnorm": op_groupnorm,
    "weight_norm": op_weight_norm, "gumbel": op_gumbel, "diversity": op_diversity, "infonce": op_infonce,
}

# ----------------------------------------------------------------------------------------------
# Wire protocol


class Desync(Exception):
    pass


def read_exact(f, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError("stdin closed inside a payload")
        buf += chunk
    return bytes(buf)


def parse_header(line):
    parts = line.split()
    if not parts:
        raise Desync("empty request line")
    op, params, arrays = parts[0], {}, []
    for p in parts[1:]:
        if "=" not in p:
            raise Desync("bad token %r (want key=value)" % p)
        k, v = p.split("=", 1)
        if k == "arrays":
            for spec in v.split(","):
                if not spec:
                    continue
                bits = spec.split(":")
                if len(bits) != 3 or bits[1] not in ("f", "i") or not bits[2].isdigit():
                    raise Desync("bad array spec %r (want name:f|i:count)" % spec)
                arrays.append((bits[0], bits[1], int(bits[2])))
        else:
            params[k] = v
    return op, params, arrays


def write_reply(out, outputs):
    specs, blobs = [], []
    for name, t in outputs:
        t = t.detach().contiguous()
        if t.dtype in (torch.int32, torch.int64):
            a = t.to(torch.int32).numpy().astype("<i4")
            ty = "i"
        else:
            a = t.to(torch.float32).numpy().astype("<f4")
            ty = "f"
        specs.append("%s:%s:%d" % (name, ty, a.size))
        blobs.append(a.tobytes())
    out.write(("ok " + ",".join(specs) + "\n").encode())
    for b in blobs:
        out.write(b)
    out.flush()


def write_err(out, msg):
    out.write(("err " + " ".join(str(msg).split()) + "\n").encode())
    out.flush()


def serve():
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    torch.set_num_threads(1)
    out.write(("ready torch=%s\n" % torch.__version__).encode())
    out.flush()
    while True:
        line = inp.readline()
        if not line:
            return 0
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            write_err(out, "request line is not ASCII")
            return 2
        if text == "quit":
            return 0
        if text == "ping":
            out.write(b"ok \n")
            out.flush()
            continue
        try:
            op, params, specs = parse_header(text)
        except Desync as e:
            write_err(out, "protocol: %s" % e)
            return 2
        A = {}
        for name, ty, count in specs:
            raw = read_exact(inp, 4 * count)
            a = np.frombuffer(raw, dtype="<f4" if ty == "f" else "<i4").copy()
            A[name] = torch.from_numpy(a.astype(np.float32 if ty == "f" else np.int32))
        try:
            if op not in OPS:
                raise ValueError("unknown op %r (known: %s)" % (op, " ".join(sorted(OPS))))
            with torch.enable_grad():
                outputs = OPS[op](params, A)
        except Exception as e:
            tb = traceback.extract_tb(sys.exc_info()[2])
            where = "%s:%d" % (tb[-1].name, tb[-1].lineno) if tb else "?"
            write_err(out, "%s: %s: %s (at %s)" % (op, type(e).__name__, e, where))
            continue
        write_reply(out, outputs)


# ----------------------------------------------------------------------------------------------
# Self-test: autograd graphs against finite differences (gradcheck, float64) and a few known values.

def selftest(verbose=True):
    torch.manual_seed(0)
    D = torch.float64
    fails = []

    def check(name, ok, extra=""):
        if verbose or not ok:
            print("%-46s %s %s" % (name, "ok" if ok else "FAIL", extra))
        if not ok:
            fails.append(name)

    def away(u, kinks, margin=0.05):
        # push float64 test points away from kinks so finite differences are valid
        u = u.clone()
        for p in kinks:
            for sgn in (1, -1):
                bad = (u - sgn * p).abs() < margin
                u[bad] = sgn * p + margin * 2 * torch.where(u[bad] >= sgn * p, 1.0, -1.0).to(D)
        return u

    # closed-form values
    u = torch.tensor([0.5, -0.5, 1.0, 2.0, -3.0], dtype=D)
    check("erf(0.5)=0.5205", abs(BASE["erf"](u)[0].item() - 0.5204998778) < 1e-9)
    check("relsign = tanh(asinh(u)/2)",
          torch.allclose(BASE["relsign"](u), torch.tanh(torch.asinh(u) / 2)))
    check("dampx peaks at 1 at u=1", abs(BASE["dampx"](u)[2].item() - 1) < 1e-12)
    check("dampexp peaks at 1 at u=1", abs(BASE["dampexp"](u)[2].item() - 1) < 1e-12)
    check("arctan scaled to (-1,1)", abs(BASE["arctan"](torch.tensor([1e9], dtype=D)).item() - 1) < 1e-8)
    check("logquadclip clip edge sqrt(e-1)",
          abs(BASE["logquadclip"](torch.tensor([_SQE], dtype=D)).item() - 1) < 1e-12)
    for fn in BASE:
        v = torch.linspace(-5, 5, 41, dtype=D)
        odd = torch.allclose(BASE[fn](-v), -BASE[fn](v))
        check("odd: %s" % fn, odd)

    # every base function and every transform: the torch graph against finite differences
    for fn in BASE:
        x = away(torch.rand(40, dtype=D) * 8 - 4, BASE_KINKS[fn]).requires_grad_(True)
        ok = torch.autograd.gradcheck(BASE[fn], (x,), eps=1e-6, atol=1e-6, raise_exception=False)
        check("gradcheck base %s" % fn, ok)
    chains = [("erf", [("hshift", 0.5)]), ("erf", [("vshift", -0.5)]), ("arcsinh", [("clip", 0.8)]),
              ("linear", [("clip", 2.0)]), ("tanh", [("mix", 0.1)]), ("erf", [("flat", 0.5)]),
              ("exproot", [("flat", 1.0)]), ("arctan", [("neg", 0.0)]),
              ("erf", [("hshift", 0.3), ("clip", 0.7)]), ("isru", [("flat", 0.5), ("mix", 0.1), ("neg", 0)])]
    for fn, tfs in chains:
        g = compose(fn, tfs)
        x = torch.rand(60, dtype=D) * 8 - 4
        m = margins(fn, tfs, x.numpy())
        x = x[torch.from_numpy(m) > 0.02].clone().requires_grad_(True)
        ok = torch.autograd.gradcheck(g, (x,), eps=1e-6, atol=1e-6, raise_exception=False)
        check("gradcheck %s %s (%d pts)" % (fn, tfs, x.numel()), ok)
    # flat formula by hand
    g = compose("erf", [("flat", 1.0)])
    v = torch.tensor([-2.0, -0.5, 0.0, 0.7, 1.5], dtype=D)
    want = torch.tensor([math.erf(-1.0), 0, 0, 0, math.erf(0.5)], dtype=D)
    check("flat: 0 inside, shifted outside", torch.allclose(g(v), want))
    # exproot under flat at u=0: no NaN in the gradient
    v = torch.tensor([0.0, 0.3, 2.0], dtype=D, requires_grad=True)
    compose("exproot", [("flat", 0.5)])(v).sum().backward()
    check("flat hides exproot's cusp", bool(torch.isfinite(v.grad).all()))

    # layers and ops in float64
    N, C = 5, 7
    x = torch.randn(N, C, dtype=D, requires_grad=True)
    w = torch.randn(C, dtype=D, requires_grad=True)
    b = torch.randn(C, dtype=D, requires_grad=True)
    check("gradcheck layernorm", torch.autograd.gradcheck(
        lambda x, w, b: F.layer_norm(x, (C,), w, b, 1e-5), (x, w, b), raise_exception=False))
    mean = x.mean(-1, keepdim=True)
    ln = (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + 1e-5) * w + b
    check("layernorm = explicit formula", torch.allclose(ln, F.layer_norm(x, (C,), w, b, 1e-5)))
    check("gradcheck rmsnorm", torch.autograd.gradcheck(
        lambda x, w, b: rmsnorm(x, w, b, 1e-5), (x, w, b), raise_exception=False))
    qkv = torch.randn(2, 5, 3 * 8, dtype=D, requires_grad=True)
    for causal in (0, 1):
        check("gradcheck attention causal=%d" % causal, torch.autograd.gradcheck(
            lambda t: attention(t, 2, 5, 8, 2, causal)[0], (qkv,), raise_exception=False))
    out, att = attention(qkv, 2, 5, 8, 2, 1)
    check("causal att is zero above the diagonal", bool((att.triu(1) == 0).all()))
    check("att rows sum to 1", torch.allclose(att.sum(-1), torch.ones(2, 2, 5, dtype=D)))
    logits = torch.randn(6, 9, dtype=D, requires_grad=True)
    tgt = torch.tensor([3, -1, 0, 8, 2, -1])
    check("gradcheck xent", torch.autograd.gradcheck(
        lambda l: xent_hard(l, tgt, 0.1), (logits,), raise_exception=False))
    ref = F.cross_entropy(logits, torch.where(tgt < 0, torch.full_like(tgt, -100), tgt),
                          ignore_index=-100, label_smoothing=0.1)
    check("xent = F.cross_entropy(label_smoothing)", torch.allclose(ref, xent_hard(logits, tgt, 0.1)))
    g = torch.autograd.grad(xent_hard(logits, tgt, 0.1), logits)[0]
    valid = (tgt >= 0).to(D)
    q = torch.zeros(6, 9, dtype=D)
    for i, t in enumerate(tgt.tolist()):
        if t >= 0:
            q[i, t] = 1
    q = 0.9 * q + 0.1 / 9
    want = (torch.softmax(logits, -1) - q) * valid[:, None] / valid.sum()
    check("xent grad = (softmax - q)/N over kept rows", torch.allclose(g, want.detach()))
    # patch embed: the conv equals im2col @ w^T + b with row-major patches
    img = torch.randn(2, 3, 8, 4, dtype=D)
    wt = torch.randn(5, 3 * 2 * 2, dtype=D)
    bt = torch.randn(5, dtype=D)
    out = F.conv2d(img, wt.view(5, 3, 2, 2), bt, stride=2).flatten(2).transpose(1, 2)
    cols = img.view(2, 3, 4, 2, 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 8, 12)
    check("patch embed = im2col matmul", torch.allclose(out, cols @ wt.T + bt))

    # the wire protocol end to end through a subprocess
    import subprocess
    p = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    hello = p.stdout.readline()
    check("serve: hello line", hello.startswith(b"ready torch="), hello.decode().strip())
    xs = np.array([0.5, -1.0, 2.0, 3.0], dtype="<f4")
    p.stdin.write(b"gelu kind=erf arrays=inp:f:4,dout:f:4\n" + xs.tobytes() + np.ones(4, "<f4").tobytes())
    p.stdin.write(b"nosuchop arrays=a:f:1\n" + xs[:1].tobytes())
    p.stdin.write(b"ping\n")
    p.stdin.flush()
    hdr = p.stdout.readline().decode()
    vals = np.frombuffer(p.stdout.read(32), "<f4")
    want = F.gelu(torch.from_numpy(xs.astype(np.float32))).numpy()
    check("serve: gelu reply", hdr.startswith("ok out:f:4,dinp:f:4") and np.allclose(vals[:4], want), hdr.strip())
    err = p.stdout.readline().decode()
    check("serve: err reply then keeps serving", err.startswith("err ") and p.stdout.readline() == b"ok \n",
          err.strip())
    p.stdin.write(b"quit\n")
    p.stdin.close()
    check("serve: quit exits 0", p.wait(timeout=30) == 0)

    print("torch_ref selftest: %d checks failed%s" % (len(fails), "" if not fails else ": " + ", ".join(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    if "--selftest" in sys.argv[1:]:
        sys.exit(selftest(verbose="--quiet" not in sys.argv[1:]))
    sys.exit(serve())
