// The npm package as a user installs it: `npm pack` (which builds it first: the
// `prepack` script) makes a tarball holding the compiled module, its types and the
// browser bundles; unpacked into a project's node_modules next to its one
// dependency, `import 'framework-client'` resolves through the package's exports
// and gives a working client.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { PACKAGE_DIR } from '../support/ts-server.js';

let dir: string;
let files: string[];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'framework-client-pack-'));
  // --ignore-scripts: the package is built already (the test script builds it
  // first); running prepack again here would rebuild it for nothing.
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], {
    cwd: PACKAGE_DIR,
    encoding: 'utf8',
  });
  const [packed] = JSON.parse(out) as { filename: string; files: { path: string }[] }[];
  files = packed!.files.map((f) => f.path);
  const installed = join(dir, 'project', 'node_modules', 'framework-client');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', join(dir, packed!.filename), '-C', installed, '--strip-components=1']);
  symlinkSync(join(PACKAGE_DIR, 'node_modules', 'flatbuffers'), join(dir, 'project', 'node_modules', 'flatbuffers'));
  writeFileSync(join(dir, 'project', 'package.json'), JSON.stringify({ name: 'user-app', type: 'module', private: true }));
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe('the npm package', () => {
  it('is publishable and holds the module, its types and the bundles', () => {
    const manifest = JSON.parse(readFileSync(join(PACKAGE_DIR, 'package.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(manifest.private, undefined, 'not marked private');
    for (const f of [
      'package.json',
      'README.md',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/client.d.ts',
      'dist/framework-client.min.js',
      'dist/framework-client.iife.min.js',
    ]) {
      assert.ok(files.includes(f), `${f} is in the package (it has ${files.length} files)`);
    }
    assert.ok(!files.some((f) => f.startsWith('build/') || f.startsWith('test/') || f.startsWith('node_modules/')), 'no tests or build output');
  });

  it("imports as 'framework-client' from a user's project and works", () => {
    const script = `
      import { Client, ClientError, ErrorCode } from 'framework-client';
      const c = new Client('ws://127.0.0.1:9/', { WebSocket: class {} });
      if (c.state !== 'disconnected') throw new Error('state ' + c.state);
      if (typeof ErrorCode.RateLimited !== 'number') throw new Error('ErrorCode');
      if (!(new ClientError('timeout', 'x') instanceof Error)) throw new Error('ClientError');
      const bundle = await import('framework-client/bundle');
      if (typeof bundle.Client !== 'function') throw new Error('the bundle export');
      console.log('ok');
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: join(dir, 'project'),
      encoding: 'utf8',
    });
    assert.equal(out.trim(), 'ok');
    assert.ok(existsSync(join(dir, 'project', 'node_modules', 'framework-client', 'dist', 'index.d.ts')));
  });
});
