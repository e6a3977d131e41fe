#!/usr/bin/env python3
"""gpu_table.py: the closing table of tools/gpu_check.sh. Reads the 'BENCH' lines of build/cuda/cuda_check
and the 'TORCH' / 'torch' lines of tools/bench_torch_gpu.py on stdin; the build status, kernel-check
status, loss-curve status and device name come as arguments. Standard library only."""
import sys


def main():
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
    print(f"== derf GPU check: {dev or 'no GPU seen'} | torch {tv} ==")
    print(f"build (make CUDA=1)                 {build}")
    print(f"kernels vs CPU reference            {check}")
    print(f"GPT-2 GPU vs CPU loss curve         {curve}")
    print()
    head = "benchmark (median ms)"
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
    print("targets (H200)")
    verdict = "pending" if d is None else f"{d:.4f} ms " + ("MET" if d <= 0.05 else "NOT MET")
    print(f"  Derf fwd+bwd 16384x768 bf16 <= 0.05 ms        : {verdict}")
    for (k, m), v in torch.items():
        if k.startswith("gpt2"):
            w = k.split()
            B, T = int(w[2][1:]), int(w[3][1:])
            print(f"  PyTorch {m:7s} {k}: {v:.1f} ms/step = {B * T / v * 1e3:,.0f} tokens/s")
    for norm in ("derf", "layernorm"):
        v = derf.get(f"gpt2 {norm} B16 T1024 step")
        tok = None if v is None else 16 * 1024 / v * 1e3
        verdict = "pending" if tok is None else f"{tok:,.0f} tokens/s " + ("MET" if tok >= 520e3 else "NOT MET")
        print(f"  derf GPT-2 124M ({norm}) B=16 T=1024 >= 520k tokens/s : {verdict}")


if __name__ == "__main__":
    main()
