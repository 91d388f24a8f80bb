// browser-test.mjs: serves the bundled page (built by build.mjs) from two
// small static servers on 127.0.0.1, a different origin from the Axon
// server, opens it in headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core) and checks what the page's gRPC-Web calls returned:
//   - from the allowed origin (http://127.0.0.1:PAGE_PORT, listed in the
//     server's cors.allowed_origins): Say and server-streaming Expand succeed,
//     in binary and in JSON format, and Expand's error status arrives;
//   - from another port (not allowed): Chromium blocks the call on CORS.
// It prints one line per check and exits 1 if any fails.
//
//   node browser-test.mjs --axon http://127.0.0.1:AXON_PORT --page-port PAGE_PORT --www DIR
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    axon: { type: 'string' },
    'page-port': { type: 'string' },
    www: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
if (!args.axon || !args['page-port'] || !args.www) {
  console.error('usage: node browser-test.mjs --axon http://127.0.0.1:PORT --page-port PORT --www DIR');
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

const checks = [];
const check = (name, ok, detail) => {
  checks.push(ok);
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${detail}`);
};
const show = (o) => JSON.stringify(o);
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const allowed = await serve(args['page-port']);
const denied = await serve(0);
const profile = mkdtempSync(path.join(tmpdir(), 'axon-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const version = context.browser()?.version() ?? (await (async () => {
    const p = await context.newPage();
    const v = await p.evaluate(() => navigator.userAgent);
    await p.close();
    return v;
  })());
  console.log(`chromium: ${version}`);

  // open loads the page from port and returns what it published, and the
  // console messages it printed.
  async function open(port, mode) {
    const page = await context.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    const url = `http://127.0.0.1:${port}/?axon=${encodeURIComponent(args.axon)}${mode ? `&mode=${mode}` : ''}`;
    await page.goto(url);
    await page.waitForFunction(() => window.axonResults !== undefined, null, { timeout: 15000 });
    const results = await page.evaluate(() => window.axonResults);
    await page.close();
    return { results, consoleLines };
  }

  const pagePort = allowed.address().port;
  const { results: r, consoleLines: lines } = await open(pagePort);
  if (r.error) {
    check('page ran', false, `${r.error}; console: ${show(lines)}`);
  } else {
    for (const format of ['binary', 'json']) {
      const f = r[format];
      check(`gRPC-Web ${format}: Say unary`, f.say.ok && f.say.value === 'hello from Chromium', show(f.say));
      check(`gRPC-Web ${format}: Say unary, non-ASCII text`, f.sayUnicode.ok && f.sayUnicode.value === 'héllo, 世界 🚀', show(f.sayUnicode));
      const want = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];
      check(`gRPC-Web ${format}: Expand server streaming`, f.expand.ok && eq(f.expand.value, want), show(f.expand));
      check(`gRPC-Web ${format}: Expand without words gives InvalidArgument`,
        !f.expandEmpty.ok && f.expandEmpty.code === 'InvalidArgument' && f.expandEmpty.partial.length === 0, show(f.expandEmpty));
    }
  }

  const deniedPort = denied.address().port;
  const { results: d, consoleLines: dlines } = await open(deniedPort, 'denied');
  const blocked = dlines.some((l) => l.includes('CORS policy'));
  check(`CORS: page from http://127.0.0.1:${deniedPort} (not allowed) is refused`,
    !d.error && d.denied && !d.denied.ok && blocked,
    `${show(d)}; console: ${show(dlines.filter((l) => l.includes('CORS')).map((l) => l.slice(0, 200)))}`);
} catch (e) {
  check('browser run', false, e?.stack ?? String(e));
} finally {
  await context?.close().catch(() => {});
  allowed.close();
  denied.close();
  rmSync(profile, { recursive: true, force: true });
}

const failed = checks.filter((ok) => !ok).length;
console.log(`chromium @connectrpc/connect-web gRPC-Web: ${checks.length - failed}/${checks.length} checks passed`);
process.exit(failed ? 1 : 0);
