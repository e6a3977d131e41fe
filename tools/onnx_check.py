#!/usr/bin/python3
"""onnx_check.py: Debian's python3-onnx checks ONNX files written by `derf export --onnx`:
onnx.checker.check_model with full_check (the graph, every node against its operator schema, and
shape inference). Usage: /usr/bin/python3 tools/onnx_check.py FILE.onnx [...]; exit 0 when all
pass, 1 on a failure, 3 when the onnx package is missing (the tests skip then)."""
import sys

try:
    import onnx
except ImportError:
    print("onnx_check: the onnx package is missing (apt-get install python3-onnx, or make deps)", file=sys.stderr)
    sys.exit(3)

ok = True
for path in sys.argv[1:]:
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        print(f"ok {path}: opset {model.opset_import[0].version}, {len(model.graph.node)} nodes, "
              f"{len(model.graph.initializer)} initializers")
    except Exception as e:  # noqa: BLE001 (any failure of the checker is a failed file)
        print(f"FAIL {path}: {e}")
        ok = False
sys.exit(0 if ok else 1)
