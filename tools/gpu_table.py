#!/usr/bin/env python3
"""gpu_table.py: the closing table of tools/gpu_check.sh and its two small helpers. Standard library only.

  gpu_table.py BUILD CHECK CURVE DEVICE < lines   the table: reads the 'BENCH' lines of build/cuda/cuda_check
                                                  and the 'TORCH' / 'torch' lines of tools/bench_torch_gpu.py
  gpu_table.py --shards DIR V                     writes DIR/train.bin and DIR/val.bin: synthetic derf token
                                                  shards (docs: include/derf/textdata.h) of vocabulary V, a
                                                  noisy deterministic successor rule, so a model can learn it
  gpu_table.py --compare-runs CPU GPU MIX         one line comparing the final validation losses of three
                                                  `derf train-lm` run folders (log.jsonl); GPU '-': the
                                                  CPU run alone (no GPU)
  gpu_table.py --idx DIR                          writes DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte: a
                                                  synthetic 28x28 10-class image set (a class-placed bright
                                                  square on noise) for `derf train`
  gpu_table.py --compare-vit CPU GPU BF16 MIX     one line comparing the final test losses of four `derf train`
                                                  run folders: CPU, GPU fp32, GPU bf16, GPU fp32 then CPU resume
                                                  (GPU '-': the CPU run alone)
"""
import json
import os
import random
import struct
import sys


def write_shards(d, V):
    os.makedirs(d, exist_ok=True)
    rng = random.Random(0)
    for name, n in (("train.bin", 200000), ("val.bin", 20000)):
        toks, t = [], 0
        for _ in range(n):
            t = (t * 7 + 3) % V if rng.random() < 0.8 else rng.randrange(V)
            toks.append(t)
        hdr = struct.pack("<256i", 20240520, 1, n, V, *([0] * 252))
        with open(os.path.join(d, name), "wb") as f:
            f.write(hdr + struct.pack(f"<{n}H", *toks))


def write_idx(d):
    os.makedirs(d, exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", 1024), ("t10k", 256)):
        labels, pix = [], bytearray()
        for _ in range(n):
            c = rng.randrange(10)
            img = [rng.randrange(64) for _ in range(28 * 28)]
            y0, x0 = 2 + (c // 5) * 13, 1 + (c % 5) * 5          # a 9x4 bright block per class
            for y in range(y0 + rng.randrange(3), y0 + 9):
                for x in range(x0, x0 + 4):
                    img[y * 28 + x] = 160 + rng.randrange(96)
            labels.append(c)
            pix += bytes(img)
        with open(os.path.join(d, f"{split}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">iiii", 0x803, n, 28, 28) + pix)
        with open(os.path.join(d, f"{split}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">ii", 0x801, n) + bytes(labels))


def final_record(run):
    try:
        with open(os.path.join(run, "log.jsonl")) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        fin = next(r for r in reversed(recs) if r.get("type") == "final")
        ips = [r["images_per_s"] for r in recs if r.get("type") == "train"]
        return fin["test_loss"], (ips[-1] if ips else None)
    except (OSError, StopIteration, ValueError, KeyError):
        return None, None


def compare_vit(cpu, gpu, bf16, mix):
    if gpu == "-":   # no GPU: the CPU run alone
        c, ci = final_record(cpu)
        print("FAILED (no final test loss in the CPU run; see vit.log)" if c is None else
              f"CPU run: final test loss {c:.4f}, {ci or 0:.0f} img/s; GPU runs skipped (no GPU)")
        return
    (c, ci), (g, gi), (b, bi), (m, _mi) = (final_record(r) for r in (cpu, gpu, bf16, mix))
    if None in (c, g, b, m):
        print(f"FAILED (final test loss cpu {c}, gpu fp32 {g}, gpu bf16 {b}, gpu->cpu resume {m}; see vit.log)")
        return
    w32 = max(abs(g - c), abs(m - c)) / c
    w16 = abs(b - c) / c
    verdict = "agree" if w32 <= 1e-2 and w16 <= 5e-2 else "DIFFER"
    ips = "" if ci is None or gi is None else f"; {ci:.0f} img/s cpu, {gi:.0f} gpu fp32, {bi:.0f} gpu bf16"
    print(f"final test loss cpu {c:.4f}, gpu fp32 {g:.4f}, gpu bf16 {b:.4f}, gpu half + cpu resume {m:.4f}: "
          f"{verdict} (fp32 worst rel {w32:.1e} tol 1e-2, bf16 {w16:.1e} tol 5e-2){ips}")


def final_val(run):
    try:
        with open(os.path.join(run, "log.jsonl")) as f:
            vals = [json.loads(line) for line in f if '"val_loss"' in line]
        return next(r["val_loss"] for r in reversed(vals) if r.get("type") == "final")
    except (OSError, StopIteration, ValueError, KeyError):
        return None


def compare_runs(cpu, gpu, mix):
    if gpu == "-":   # no GPU: the CPU run alone
        c = final_val(cpu)
        print("FAILED (no final val loss in the CPU run; see lm.log)" if c is None else
              f"CPU run: final val loss {c:.4f}; GPU runs skipped (no GPU)")
        return
    c, g, m = final_val(cpu), final_val(gpu), final_val(mix)
    if None in (c, g, m):
        print(f"FAILED (final val loss cpu {c}, gpu {g}, gpu->cpu resume {m}; see lm.log)")
        return
    worst = max(abs(g - c), abs(m - c)) / c
    verdict = "agree" if worst <= 5e-2 else "DIFFER"
    print(f"final val loss cpu {c:.4f}, gpu {g:.4f}, gpu 20 steps + cpu resume {m:.4f}: {verdict} "
          f"(worst rel diff {worst:.1e}, tol 5e-2)")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--shards":
        return write_shards(sys.argv[2], int(sys.argv[3]))
    if len(sys.argv) == 5 and sys.argv[1] == "--compare-runs":
        return compare_runs(*sys.argv[2:5])
    if len(sys.argv) == 3 and sys.argv[1] == "--idx":
        return write_idx(sys.argv[2])
    if len(sys.argv) == 6 and sys.argv[1] == "--compare-vit":
        return compare_vit(*sys.argv[2:6])
    if len(sys.argv) != 5:
        sys.exit("usage: gpu_table.py BUILD CHECK CURVE DEVICE < bench lines")
    build, check, curve, dev = sys.argv[1:5]
    derf, torch = {}, {}
    tv = "-"
    for line in sys.stdin:
        w = line.split()
        if len(w) >= 7 and w[0] == "BENCH":   # BENCH norm derf bf16 16384x768 fwd+bwd 0.0400 ms 1234 GB/s
            derf[" ".join(w[1:6])] = float(w[6])
        elif len(w) >= 4 and w[0] == "TORCH":  # TORCH norm derf bf16 16384x768 fwd+bwd compile 0.0612
            torch[(" ".join(w[1:-2]), w[-2])] = float(w[-1])
        elif w and w[0] == "torch":
            tv = " ".join(w[1:])

    def f(v):
        return "-" if v is None else f"{v:.4f}"

    print()
    card = dev or "no GPU seen"
    print(f"== derf GPU check: {card} | torch {tv} ==")
    print(f"build (make CUDA=1)                 {build}")
    print(f"kernels vs CPU reference            {check} ({card})")
    for part in curve.split(" | "):   # "GPT-2 ...: ... | ViT ...: ..."
        what, _, res = part.partition(": ")
        print(f"{what:36s}{res} ({card})")
    print()
    head = f"benchmark (median ms, {card})"
    print(f"{head:44s} {'derf':>9s} {'eager':>9s} {'compile':>9s} {'derf/compile':>12s}")
    keys = list(derf) + [k for (k, _m) in torch if k not in derf]
    seen = set()
    for k in keys:
        if k in seen:
            continue
        seen.add(k)
        d, e, c = derf.get(k), torch.get((k, "eager")), torch.get((k, "compile"))
        r = "-" if d is None or c is None else f"{d / c:.2f}"
        print(f"{k:44s} {f(d):>9s} {f(e):>9s} {f(c):>9s} {r:>12s}")
    print("(derf: build/cuda/cuda_check; eager / compile: PyTorch on the same GPU)")
    d = derf.get("norm derf bf16 16384x768 fwd+bwd")
    print()
    on = f"on {card}; the targets were set on an H200"
    print(f"targets ({on})")
    verdict = "pending" if d is None else f"{d:.4f} ms " + ("MET" if d <= 0.05 else "NOT MET")
    print(f"  Derf fwd+bwd 16384x768 bf16 <= 0.05 ms        : {verdict} ({card})")
    for (k, m), v in torch.items():
        if k.startswith("gpt2"):
            w = k.split()
            B, T = int(w[2][1:]), int(w[3][1:])
            print(f"  PyTorch {m:7s} {k}: {v:.1f} ms/step = {B * T / v * 1e3:,.0f} tokens/s ({card})")
    for norm in ("derf", "layernorm"):
        v = derf.get(f"gpt2 {norm} B16 T1024 step")
        tok = None if v is None else 16 * 1024 / v * 1e3
        verdict = "pending" if tok is None else f"{tok:,.0f} tokens/s " + ("MET" if tok >= 520e3 else "NOT MET")
        print(f"  derf GPT-2 124M ({norm}) B=16 T=1024 >= 520k tokens/s : {verdict} ({card})")
    for k in sorted(set(list(derf) + [k for (k, _m) in torch])):
        if k.startswith("vit-s16"):                      # vit-s16 NORM B128 224px step
            B = int(k.split()[2][1:])
            row = [("derf", derf.get(k)), ("PyTorch eager", torch.get((k, "eager"))),
                   ("PyTorch compile", torch.get((k, "compile")))]
            tag = k.split()[0][len("vit-s16"):]           # "" or "-attloop"
            print(f"  ViT-S/16{tag} {k.split()[1]} B={B} images/s: " + ", ".join(
                f"{n} {B / v * 1e3:,.0f}" if v else f"{n} -" for n, v in row) + f" ({card})")


if __name__ == "__main__":
    main()
