#!/usr/bin/env node
// gpt2_tokenize_ref.js: the reference GPT-2 encoder for derf's tokenizer tests: the npm package
// gpt-3-encoder@1.1.4's own JS encode(), installed by `make deps` into /usr/local/share/derf/node
// (or $DERF_NODE_PREFIX).
//
//   node tools/gpt2_tokenize_ref.js FILE...     one line per FILE: its token ids, space separated
//   node tools/gpt2_tokenize_ref.js --decode FILE...   FILE holds ids (space separated); writes the text
//   node tools/gpt2_tokenize_ref.js --bench REPS FILE   `derf bench`'s tokenizer peer: encodes FILE once
//                                  untimed, then REPS times, one line 't WALL_MS CPU_MS' per timed pass
//
// Files are read as UTF-8 (node replaces invalid sequences by U+FFFD, so only valid UTF-8 is a fair
// comparison). The package's encode() concatenates arrays quadratically, so long texts are cut
// into pieces of about 4 KB where no GPT-2 pre-token can span the cut (just before a whitespace
// character that follows a non-whitespace one: every regex alternative that holds a non-space char
// ends there, and the matcher restarts at that point anyway). The ids are those of encode(text).
'use strict';
const fs = require('fs');
const path = require('path');

const prefix = process.env.DERF_NODE_PREFIX || '/usr/local/share/derf/node';
let enc;
try {
  enc = require(path.join(prefix, 'node_modules', 'gpt-3-encoder'));
} catch (e) {
  process.stderr.write(`gpt2_tokenize_ref: cannot load gpt-3-encoder from ${prefix}/node_modules (run 'make deps'): ${e.message}\n`);
  process.exit(2);
}

const WS = /\s/u;
function encodeLong(text) {
  const out = [];
  let start = 0;
  const CH = 4096;
  while (start < text.length) {
    let cut = text.length;
    if (text.length - start > CH) {
      cut = -1;
      for (let p = start + CH; p < text.length; p++) {
        if (WS.test(text[p]) && !WS.test(text[p - 1])) { cut = p; break; }
      }
      if (cut < 0) cut = text.length;
    }
    const ids = enc.encode(text.slice(start, cut));
    for (const id of ids) out.push(id);
    start = cut;
  }
  return out;
}

const args = process.argv.slice(2);
if (args.length === 0) {
  process.stderr.write('usage: node tools/gpt2_tokenize_ref.js [--decode] FILE...\n');
  process.exit(2);
}
if (args[0] === '--bench') {
  const reps = Number(args[1]);
  if (!(reps >= 1) || args.length !== 3) {
    process.stderr.write('usage: node tools/gpt2_tokenize_ref.js --bench REPS FILE\n');
    process.exit(2);
  }
  const text = fs.readFileSync(args[2], 'utf8');
  encodeLong(text); // the cache warm, as derf bench's own untimed pass
  for (let r = 0; r < reps; r++) {
    const t = process.hrtime.bigint(), c = process.cpuUsage();
    encodeLong(text);
    const u = process.cpuUsage(c);
    process.stdout.write(`t ${Number(process.hrtime.bigint() - t) / 1e6} ${(u.user + u.system) / 1e3}\n`);
  }
  process.exit(0);
}
const decode = args[0] === '--decode';
const files = decode ? args.slice(1) : args;
const chunks = [];
for (const f of files) {
  if (decode) {
    const ids = fs.readFileSync(f, 'utf8').trim().split(/\s+/).filter(s => s.length).map(Number);
    process.stdout.write(enc.decode(ids));
  } else {
    const ids = encodeLong(fs.readFileSync(f, 'utf8'));
    for (const id of ids) {
      if (typeof id !== 'number') {
        process.stderr.write(`gpt2_tokenize_ref: ${f}: the JS encoder produced a non-id (${id})\n`);
        process.exit(1);
      }
    }
    chunks.push(ids.join(' ') + '\n');
    if (chunks.length >= 64) { process.stdout.write(chunks.join('')); chunks.length = 0; }
  }
}
if (chunks.length) process.stdout.write(chunks.join(''));
