#!/usr/bin/env node
// onnx_run.js: runs an ONNX model with ONNX Runtime (npm onnxruntime-node, CPU) on one input read from a
// raw little-endian file and writes the first output as raw float32: the independent consumer that
// tests/test_onnx.c checks `derf export --onnx` against.
// Usage: node tools/onnx_run.js MODEL.onnx INPUT_NAME float32|int64 DIM,DIM,... IN.bin OUT.bin
// Prints the output's name and dims. ONNX Runtime is looked up in $DERF_ORT_DIR (a node_modules folder)
// or /usr/local/share/derf/onnxruntime/node_modules (tools/install-deps.sh puts it there).
'use strict';
const fs = require('fs');
const path = require('path');
const [model, inName, dtype, dimsArg, inFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node tools/onnx_run.js MODEL.onnx INPUT_NAME float32|int64 DIM,DIM,... IN.bin OUT.bin');
  process.exit(2);
}
const dir = process.env.DERF_ORT_DIR || '/usr/local/share/derf/onnxruntime/node_modules';
const ort = require(path.join(dir, 'onnxruntime-node'));
const dims = dimsArg.split(',').map(Number);
const raw = fs.readFileSync(inFile);
const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
const data = dtype === 'int64' ? new BigInt64Array(buf) : new Float32Array(buf);
(async () => {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const out = await session.run({ [inName]: new ort.Tensor(dtype, data, dims) });
  const name = session.outputNames[0];
  const t = out[name];
  fs.writeFileSync(outFile, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  console.log(`${name} ${t.dims.join(',')}`);
})().catch((e) => { console.error(`onnx_run: ${e.message}`); process.exit(1); });
