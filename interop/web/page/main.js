// The browser page: calls the Axon server named by ?axon=URL over gRPC-Web
// with @connectrpc/connect-web, and publishes what happened as
// window.axonResults (a promise) for the driver (browser-test.mjs) to check.
// The page checks nothing itself.
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { Echo } from 'axon-echo-pb';

const params = new URLSearchParams(location.search);
const baseUrl = params.get('axon');

// outcome runs one call and reports its result or its error's code.
async function outcome(fn) {
  const seen = [];
  try {
    const value = await fn(seen);
    return { ok: true, value };
  } catch (e) {
    const err = ConnectError.from(e);
    return { ok: false, code: Code[err.code], message: err.rawMessage, partial: seen };
  }
}

async function collect(stream, seen) {
  for await (const res of stream) seen.push(res.text);
  return seen;
}

async function calls(useBinaryFormat) {
  const transport = createGrpcWebTransport({ baseUrl, useBinaryFormat });
  const echo = createClient(Echo, transport);
  const opts = { timeoutMs: 5000 };
  return {
    say: await outcome(async () => (await echo.say({ text: 'hello from Chromium' }, opts)).text),
    sayUnicode: await outcome(async () => (await echo.say({ text: 'héllo, 世界 🚀' }, opts)).text),
    expand: await outcome((seen) => collect(echo.expand({ text: 'alpha beta  gamma\tdelta epsilon' }, opts), seen)),
    expandEmpty: await outcome((seen) => collect(echo.expand({ text: '  ' }, opts), seen)),
  };
}

async function run() {
  if (!baseUrl) throw new Error('the page needs ?axon=URL');
  if (params.get('mode') === 'denied') {
    // One call that must fail: the page is served from an origin the
    // server does not allow, or the browser does not trust the server's
    // certificate.
    const echo = createClient(Echo, createGrpcWebTransport({ baseUrl }));
    return { denied: await outcome(async () => (await echo.say({ text: 'should not arrive' }, { timeoutMs: 5000 })).text) };
  }
  return { origin: location.origin, binary: await calls(true), json: await calls(false) };
}

window.axonResults = run().then(
  (r) => { document.getElementById('out').textContent = JSON.stringify(r, null, 2); return r; },
  (e) => { document.getElementById('out').textContent = String(e); return { error: String(e?.stack ?? e) }; },
);
