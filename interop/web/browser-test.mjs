// browser-test.mjs: serves the bundled page (built by build.mjs) from two
// small static servers on 127.0.0.1, a different origin from the Axon
// server, opens it in headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core) and checks what the page's gRPC-Web calls returned:
//   - from the allowed origin (http://127.0.0.1:PAGE_PORT, listed in the
//     server's cors.allowed_origins): Say and server-streaming Expand succeed,
//     in binary and in JSON format, and Expand's error status arrives;
//   - from another port (not allowed): Chromium blocks the call on CORS.
// With an https:// Axon URL (a listener in tls.mode server) it also needs
// --trust-ca: the CA that issued the server's certificate. Chromium trusts it
// the way a user trusts a local CA on Linux: the CA is added with trust
// "C,," (a CA for TLS servers) to the NSS database $HOME/.pki/nssdb of a
// temporary HOME, and Chromium runs with that HOME. Certificate errors are
// never ignored. It then checks that the responses came over TLS from a
// certificate of that CA, and that a second Chromium whose NSS database does
// not hold the CA refuses the server (ERR_CERT_AUTHORITY_INVALID).
// It prints one line per check and exits 1 if any fails.
//
//   node browser-test.mjs --axon http://127.0.0.1:AXON_PORT --page-port PAGE_PORT --www DIR
//   node browser-test.mjs --axon https://127.0.0.1:AXON_PORT --trust-ca ca.pem --page-port PAGE_PORT --www DIR
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    axon: { type: 'string' },
    'page-port': { type: 'string' },
    www: { type: 'string' },
    'trust-ca': { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
const https = args.axon?.startsWith('https://');
if (!args.axon || !args['page-port'] || !args.www || (https && !args['trust-ca'])) {
  console.error('usage: node browser-test.mjs --axon http://127.0.0.1:PORT --page-port PORT --www DIR\n' +
    '       node browser-test.mjs --axon https://127.0.0.1:PORT --trust-ca CA.pem --page-port PORT --www DIR');
  process.exit(2);
}

const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

// serve starts a static file server for args.www on 127.0.0.1:port.
function serve(port) {
  const server = createServer((req, res) => {
    const name = new URL(req.url, 'http://x').pathname.slice(1) || 'index.html';
    if (!/^[\w.-]+$/.test(name)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(path.join(args.www, name));
      res.writeHead(200, { 'content-type': types[path.extname(name)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), '127.0.0.1', () => resolve(server));
  });
}

// nssHome makes a temporary HOME with an NSS database in .pki/nssdb, where
// Chromium on Linux looks for the certificates its user added, and adds the
// CA in caFile to it (when given) as trusted to issue TLS server
// certificates: what `certutil -A -t "C,,"` does for a user who trusts a
// local CA.
function nssHome(caFile) {
  const home = mkdtempSync(path.join(tmpdir(), 'axon-home-'));
  temps.push(home);
  const db = `sql:${path.join(home, '.pki', 'nssdb')}`;
  mkdirSync(path.join(home, '.pki', 'nssdb'), { recursive: true, mode: 0o700 });
  execFileSync('certutil', ['-N', '-d', db, '--empty-password']);
  if (caFile) {
    execFileSync('certutil', ['-A', '-d', db, '-n', 'Axon development CA', '-t', 'C,,', '-i', caFile]);
  }
  return { home, list: execFileSync('certutil', ['-L', '-d', db], { encoding: 'utf8' }) };
}

// launch starts headless Chromium with a fresh profile and returns its
// context; home, when given, is its HOME, where it finds its NSS database.
async function launch(home) {
  const profile = mkdtempSync(path.join(tmpdir(), 'axon-chromium-'));
  temps.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    ...(home ? { env: { ...process.env, HOME: home } } : {}),
  });
  contexts.push(context);
  return context;
}

// open loads the page from port in context and returns what it published,
// the console messages it printed, the requests to the Axon server that
// failed, the TLS details of the first response from it and the HTTP
// versions of its responses.
async function open(context, port, mode) {
  const page = await context.newPage();
  const consoleLines = [];
  const failures = [];
  let security = null; // a promise of the first Axon response's TLS details
  // The HTTP versions of the responses from Axon, from the DevTools
  // protocol (playwright's Response does not tell): Chromium uses HTTP/1.1
  // for http:// and negotiates h2 over TLS.
  const versions = new Set();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.responseReceived', (e) => {
    if (e.response.url.startsWith(args.axon)) versions.add(e.response.protocol);
  });
  page.on('console', (m) => consoleLines.push(m.text()));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => failures.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (!security && r.url().startsWith(args.axon)) security = r.securityDetails();
  });
  const url = `http://127.0.0.1:${port}/?axon=${encodeURIComponent(args.axon)}${mode ? `&mode=${mode}` : ''}`;
  await page.goto(url);
  await page.waitForFunction(() => window.axonResults !== undefined, null, { timeout: 15000 });
  const results = await page.evaluate(() => window.axonResults);
  const tls = await security;
  await page.close();
  return { results, consoleLines, failures, security: tls, versions: [...versions] };
}

const checks = [];
const check = (name, ok, detail) => {
  checks.push(ok);
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${detail}`);
};
const show = (o) => JSON.stringify(o);
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const temps = []; // temporary directories, removed at the end
const contexts = []; // browser contexts, closed at the end
const allowed = await serve(args['page-port']);
const denied = await serve(0);
try {
  let home;
  let caName; // the CA's common name, by which Chromium names the issuer
  if (https) {
    const ca = new X509Certificate(readFileSync(args['trust-ca']));
    caName = ca.subject.match(/^CN=(.*)$/m)?.[1];
    const trusted = nssHome(args['trust-ca']);
    home = trusted.home;
    console.log(`NSS database ${home}/.pki/nssdb, certutil -L:`);
    console.log(trusted.list.split('\n').filter((l) => l.trim()).map((l) => `  ${l.trimEnd()}`).join('\n'));
  }
  const context = await launch(home);
  console.log(`chromium: ${context.browser()?.version() ?? 'version unknown'}`);

  const pagePort = allowed.address().port;
  const { results: r, consoleLines: lines, failures, security, versions } = await open(context, pagePort);
  console.log(`responses from Axon over: ${versions.join(', ') || 'none'}`);
  if (r.error) {
    check('page ran', false, `${r.error}; console: ${show(lines)}; failed requests: ${show(failures)}`);
  } else {
    const failedBefore = checks.filter((ok) => !ok).length;
    for (const format of ['binary', 'json']) {
      const f = r[format];
      check(`gRPC-Web ${format}: Say unary`, f.say.ok && f.say.value === 'hello from Chromium', show(f.say));
      check(`gRPC-Web ${format}: Say unary, non-ASCII text`, f.sayUnicode.ok && f.sayUnicode.value === 'héllo, 世界 🚀', show(f.sayUnicode));
      const want = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];
      check(`gRPC-Web ${format}: Expand server streaming`, f.expand.ok && eq(f.expand.value, want), show(f.expand));
      check(`gRPC-Web ${format}: Expand without words gives InvalidArgument`,
        !f.expandEmpty.ok && f.expandEmpty.code === 'InvalidArgument' && f.expandEmpty.partial.length === 0, show(f.expandEmpty));
    }
    if (https) {
      check('HTTPS: the responses came over TLS 1.3 from a certificate of the trusted CA',
        security?.protocol === 'TLS 1.3' && security.issuer === caName, show(security));
    }
    if (checks.filter((ok) => !ok).length > failedBefore) {
      console.log(`  failed requests: ${show(failures)}; console: ${show(lines)}`);
    }
  }

  const deniedPort = denied.address().port;
  const { results: d, consoleLines: dlines } = await open(context, deniedPort, 'denied');
  const blocked = dlines.some((l) => l.includes('CORS policy'));
  check(`CORS: page from http://127.0.0.1:${deniedPort} (not allowed) is refused`,
    !d.error && d.denied && !d.denied.ok && blocked,
    `${show(d)}; console: ${show(dlines.filter((l) => l.includes('CORS')).map((l) => l.slice(0, 200)))}`);

  if (https) {
    // The same page from the allowed origin, in a Chromium whose NSS
    // database is the same except that it lacks the CA: the call has to
    // fail on the certificate, which shows that the CA in the database is
    // what made the first browser trust the server.
    const second = await launch(nssHome(null).home);
    const u = await open(second, pagePort, 'denied');
    const certError = [...u.failures, ...u.consoleLines].some((l) => l.includes('ERR_CERT_AUTHORITY_INVALID'));
    check('HTTPS: a Chromium that does not trust the CA refuses the server',
      !u.results.error && u.results.denied && !u.results.denied.ok && certError,
      `${show(u.results)}; failed requests: ${show(u.failures)}; console: ${show(u.consoleLines.map((l) => l.slice(0, 200)))}`);
  }
} catch (e) {
  check('browser run', false, e?.stack ?? String(e));
} finally {
  for (const c of contexts) await c.close().catch(() => {});
  allowed.close();
  denied.close();
  for (const t of temps) rmSync(t, { recursive: true, force: true });
}

const failed = checks.filter((ok) => !ok).length;
const over = https ? 'gRPC-Web over HTTPS' : 'gRPC-Web';
console.log(`chromium @connectrpc/connect-web ${over}: ${checks.length - failed}/${checks.length} checks passed`);
process.exit(failed ? 1 : 0);
