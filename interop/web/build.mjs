// build.mjs: generates the ES code for examples/echo/echo.proto with protoc
// and protoc-gen-es, and bundles the browser page with esbuild, into OUTDIR
// (outside the repository in run.sh, so nothing generated is committed).
//
//   node build.mjs OUTDIR
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import * as esbuild from 'esbuild';

const outdir = process.argv[2];
if (!outdir) {
  console.error('usage: node build.mjs OUTDIR');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const gen = path.resolve(outdir, 'gen');
const www = path.resolve(outdir, 'www');
mkdirSync(gen, { recursive: true });
mkdirSync(www, { recursive: true });

execFileSync('protoc', [
  `--plugin=protoc-gen-es=${path.join(here, 'node_modules/.bin/protoc-gen-es')}`,
  `--es_out=${gen}`,
  '--es_opt=target=js',
  `--proto_path=${path.resolve(here, '../../examples/echo')}`,
  'echo.proto',
], { stdio: 'inherit' });

await esbuild.build({
  entryPoints: [path.join(here, 'page/main.js')],
  outfile: path.join(www, 'bundle.js'),
  bundle: true,
  format: 'esm',
  target: 'es2022',
  logLevel: 'warning',
  // The page imports the generated code by this name; the generated file
  // lives in OUTDIR and imports @bufbuild/protobuf from this folder's
  // node_modules.
  alias: { 'axon-echo-pb': path.join(gen, 'echo_pb.js') },
  nodePaths: [path.join(here, 'node_modules')],
});
copyFileSync(path.join(here, 'page/index.html'), path.join(www, 'index.html'));
