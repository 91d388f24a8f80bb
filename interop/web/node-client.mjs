// node-client.mjs: calls an Axon server over gRPC (HTTP/2) with
// @grpc/grpc-js, loading examples/echo/echo.proto at run time through
// @grpc/proto-loader. It checks unary Say, server-streaming Expand, Expand's
// INVALID_ARGUMENT for a text without words, and UNIMPLEMENTED for a method
// and a service the server does not have. Without options it speaks
// cleartext HTTP/2 (h2c). With --ca, --cert and --key it speaks mutual TLS
// (grpc.credentials.createSsl: the CA it trusts, its key and its
// certificate) and also checks that the server refuses a client that
// presents no certificate and one that speaks cleartext, and that a client
// that does not trust the CA refuses the server. It prints one line per
// check and exits 1 if any fails.
//
//   node node-client.mjs 127.0.0.1:PORT
//   node node-client.mjs --ca ca.pem --cert cert.pem --key key.pem 127.0.0.1:PORT
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const { values: opts, positionals } = parseArgs({
  options: { ca: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' } },
  allowPositionals: true,
});
const target = positionals[0];
const tlsFiles = [opts.ca, opts.cert, opts.key].filter(Boolean).length;
if (!target || positionals.length !== 1 || (tlsFiles !== 0 && tlsFiles !== 3)) {
  console.error('usage: node node-client.mjs [--ca CA.pem --cert CERT.pem --key KEY.pem] HOST:PORT');
  process.exit(2);
}
const mutual = tlsFiles === 3;

const here = path.dirname(fileURLToPath(import.meta.url));
const protoFile = path.resolve(here, '../../examples/echo/echo.proto');
const def = protoLoader.loadSync(protoFile, { keepCase: true, defaults: true });
const pkg = grpc.loadPackageDefinition(def);
const Echo = pkg.axon.example.v1.Echo;
// With TLS, grpc-js checks that the server's certificate chains to the CA
// and names the host dialed (the dev credentials name 127.0.0.1).
const creds = mutual
  ? grpc.credentials.createSsl(readFileSync(opts.ca), readFileSync(opts.key), readFileSync(opts.cert))
  : grpc.credentials.createInsecure();
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
// called, and how a client with other credentials (c) calls.
function rawUnary(method, c = creds) {
  const raw = new grpc.Client(target, c);
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

if (mutual) {
  checks.push(
    ['without a client certificate the call is refused', async () => {
      // In TLS 1.3 the server checks the client's certificate after the
      // client has finished its handshake, so the refusal arrives as the
      // server's "certificate required" alert and the call is UNAVAILABLE.
      const r = await rawUnary('/axon.example.v1.Echo/Say', grpc.credentials.createSsl(readFileSync(opts.ca)));
      if (r.code !== grpc.status.UNAVAILABLE || !/certificate required/.test(r.details ?? '')) {
        throw new Error(`got ${codeName(r.code)} "${r.details ?? ''}", want UNAVAILABLE with a "certificate required" alert`);
      }
      return `UNAVAILABLE, ${r.details.match(/tlsv13 alert certificate required|SSL alert number \d+/g).join(', ')}`;
    }],
    ['a client that does not trust the CA refuses the server', async () => {
      // The same key and certificate, but the default roots instead of the
      // dev CA: grpc-js must not accept the server's certificate.
      const r = await rawUnary('/axon.example.v1.Echo/Say',
        grpc.credentials.createSsl(null, readFileSync(opts.key), readFileSync(opts.cert)));
      const verify = /unable to verify the first certificate|unable to get local issuer certificate|self[- ]signed certificate/.exec(r.details ?? '');
      if (r.code !== grpc.status.UNAVAILABLE || !verify) {
        throw new Error(`got ${codeName(r.code)} "${r.details ?? ''}", want UNAVAILABLE with a certificate verification error`);
      }
      return `UNAVAILABLE, ${verify[0]}`;
    }],
    ['cleartext (h2c) call to the TLS listener is refused', async () => {
      // The server answers an HTTP/2 preface without TLS with GOAWAY
      // INADEQUATE_SECURITY, which grpc-js reports as PERMISSION_DENIED.
      const r = await rawUnary('/axon.example.v1.Echo/Say', grpc.credentials.createInsecure());
      if (r.code !== grpc.status.PERMISSION_DENIED) {
        throw new Error(`got ${codeName(r.code)} "${r.details ?? ''}", want PERMISSION_DENIED (GOAWAY INADEQUATE_SECURITY)`);
      }
      return `PERMISSION_DENIED "${r.details}"`;
    }],
  );
}

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
console.log(`node @grpc/grpc-js${mutual ? ' over mutual TLS' : ''}: ${checks.length - failed}/${checks.length} checks passed`);
process.exit(failed ? 1 : 0);
