// node-client.mjs: calls an Axon server over gRPC (HTTP/2, cleartext) with
// @grpc/grpc-js, loading examples/echo/echo.proto at run time through
// @grpc/proto-loader. It checks unary Say, server-streaming Expand, Expand's
// INVALID_ARGUMENT for a text without words, and UNIMPLEMENTED for a method
// and a service the server does not have. It prints one line per check and
// exits 1 if any fails.
//
//   node node-client.mjs 127.0.0.1:PORT
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const target = process.argv[2];
if (!target) {
  console.error('usage: node node-client.mjs HOST:PORT');
  process.exit(2);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const protoFile = path.resolve(here, '../../examples/echo/echo.proto');
const def = protoLoader.loadSync(protoFile, { keepCase: true, defaults: true });
const pkg = grpc.loadPackageDefinition(def);
const Echo = pkg.axon.example.v1.Echo;
const creds = grpc.credentials.createInsecure();
const client = new Echo(target, creds);
const deadline = () => new Date(Date.now() + 5000);

function say(text) {
  return new Promise((resolve, reject) => {
    client.Say({ text }, { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// expand collects Expand's responses; it resolves with {texts, status}
// whatever the final status is, so that error paths can be checked too.
function expand(text) {
  return new Promise((resolve) => {
    const texts = [];
    const call = client.Expand({ text }, { deadline: deadline() });
    let err = null;
    call.on('data', (m) => texts.push(m.text));
    call.on('error', (e) => { err = e; });
    call.on('status', (s) => resolve({ texts, code: err ? err.code : s.code, details: s.details }));
  });
}

// rawUnary calls any method path with an empty request and reports the
// status code; it is how a method or service missing from echo.proto is
// called.
function rawUnary(method) {
  const raw = new grpc.Client(target, creds);
  return new Promise((resolve) => {
    raw.makeUnaryRequest(method, () => Buffer.alloc(0), (b) => b, Buffer.alloc(0),
      { deadline: deadline() }, (err) => {
        raw.close();
        resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK });
      });
  });
}

const codeName = (c) => Object.keys(grpc.status).find((k) => grpc.status[k] === c) ?? String(c);
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const checks = [
  ['Say unary', async () => {
    const res = await say('hello from grpc-js');
    if (res.text !== 'hello from grpc-js') throw new Error(`got ${JSON.stringify(res)}`);
    return `"${res.text}"`;
  }],
  ['Say unary, non-ASCII text', async () => {
    const text = 'héllo, 世界 🚀';
    const res = await say(text);
    if (res.text !== text) throw new Error(`got ${JSON.stringify(res.text)}`);
    return `"${res.text}"`;
  }],
  ['Expand server streaming', async () => {
    const r = await expand('one two  three\tfour');
    const want = ['one', 'two', 'three', 'four'];
    if (r.code !== grpc.status.OK || !eq(r.texts, want)) {
      throw new Error(`got ${codeName(r.code)} ${JSON.stringify(r.texts)}, want OK ${JSON.stringify(want)}`);
    }
    return `${r.texts.length} messages ${JSON.stringify(r.texts)}, status OK`;
  }],
  ['Expand without words gives INVALID_ARGUMENT', async () => {
    const r = await expand('   ');
    if (r.code !== grpc.status.INVALID_ARGUMENT || r.texts.length !== 0) {
      throw new Error(`got ${codeName(r.code)} after ${r.texts.length} messages`);
    }
    return `INVALID_ARGUMENT "${r.details}"`;
  }],
  ['unknown method gives UNIMPLEMENTED', async () => {
    const r = await rawUnary('/axon.example.v1.Echo/NoSuchMethod');
    if (r.code !== grpc.status.UNIMPLEMENTED) throw new Error(`got ${codeName(r.code)} "${r.details ?? ''}"`);
    return `UNIMPLEMENTED "${r.details}"`;
  }],
  ['unknown service gives UNIMPLEMENTED', async () => {
    const r = await rawUnary('/axon.example.v1.NoSuchService/Say');
    if (r.code !== grpc.status.UNIMPLEMENTED) throw new Error(`got ${codeName(r.code)} "${r.details ?? ''}"`);
    return `UNIMPLEMENTED "${r.details}"`;
  }],
];

let failed = 0;
for (const [name, fn] of checks) {
  try {
    const detail = await fn();
    console.log(`PASS ${name}: ${detail}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e?.message ?? e}`);
  }
}
client.close();
console.log(`node @grpc/grpc-js: ${checks.length - failed}/${checks.length} checks passed`);
process.exit(failed ? 1 : 0);
