// daemon.js (tests): the real tesserad on a temporary socket and data dir, as the C tests
// start it (tests/lib/daemon.c). The binary: $TESSERAD, else the gcc build of ./tests/run
// (build/test/sidecar/tesserad). Ready is when sys.ping answers (polled, 10 s deadline).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const TESSERAD = process.env.TESSERAD || path.join(root, 'build/test/sidecar/tesserad');
export const CASES = path.join(root, 'tests/cases/clients.json');

/** Resolves once cond() is truthy (polled every few ms), or rejects after timeoutMs. */
export async function waitFor(cond, timeoutMs = 5000, what = 'condition') {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export class Daemon {
  constructor(flags = []) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-node-'));
    this.socket = path.join(this.dir, 'run/tesserad.sock');
    this.flags = flags;
    this.data = path.join(this.dir, 'data');
    this.proc = null;
  }

  static async start(flags) {
    const d = new Daemon(flags);
    await d.launch();
    return d;
  }

  async launch() {
    const log = fs.openSync(path.join(this.dir, 'tesserad.log'), 'a');
    this.proc = spawn(TESSERAD, ['--socket', this.socket, '--data', this.data,
      '--keys', path.join(this.dir, 'keys'), '--log-level', 'debug', ...this.flags],
    { stdio: ['ignore', 'ignore', log] });
    fs.closeSync(log);
    const proc = this.proc;
    let exited = false;
    proc.once('exit', () => { exited = true; });
    await waitFor(async () => {
      if (exited) throw new Error(`tesserad exited before it was ready:\n${this.log()}`);
      try {
        const c = await connect(this.socket, { connectTimeoutMs: 200 });
        await c.sysPing();
        c.close();
        return true;
      } catch {
        return false;
      }
    }, 10000, 'tesserad to answer sys.ping');
  }

  /** The next launch uses a fresh data dir (same keys): the feed cannot resume there. */
  swapData() {
    this.data = path.join(this.dir, `data-${Date.now()}`);
  }

  log() {
    return fs.readFileSync(path.join(this.dir, 'tesserad.log'), 'utf8');
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const done = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await done;
  }

  async cleanup() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
