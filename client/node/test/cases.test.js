// cases.test.js: the shared request/response cases (tests/cases/clients.json, its "about" says
// the format) through the Node client; the C and Python clients run the same file.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { connect } from '../src/index.js';
import { Daemon, CASES } from './daemon.js';

const { cases } = JSON.parse(fs.readFileSync(CASES, 'utf8'));
const d = await Daemon.start();
test.after(() => d.cleanup());

function substitute(v, saved) {
  if (typeof v === 'string' && v.startsWith('$') && v.includes('.')) {
    const dot = v.indexOf('.');
    return saved[v.slice(1, dot)][v.slice(dot + 1)];
  }
  if (Array.isArray(v)) return v.map((x) => substitute(x, saved));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substitute(x, saved)]));
  return v;
}

function matches(want, got) {
  if (want && typeof want === 'object' && !Array.isArray(want))
    return got && typeof got === 'object' && Object.entries(want).every(([k, v]) => k in got && matches(v, got[k]));
  try {
    assert.deepStrictEqual(got, want);
    return true;
  } catch {
    return false;
  }
}

for (const c of cases) {
  test(c.name, async () => {
    const client = await connect(d.socket);
    const saved = {};
    try {
      for (const [i, step] of c.steps.entries()) {
        const where = `step ${i + 1} (${step.call})`;
        const expect = substitute(step.expect ?? {}, saved);
        let result;
        try {
          result = await client.call(step.call, substitute(step.params ?? {}, saved));
        } catch (err) {
          assert.ok(err.remote && expect.error === err.code, `${where}: error ${err.code}`);
          continue;
        }
        assert.ok(!('error' in expect), `${where}: succeeded, expected ${expect.error}`);
        if (expect.result) assert.ok(matches(expect.result, result), `${where}: result ${JSON.stringify(result)}`);
        for (const k of expect.keys ?? []) assert.ok(k in result, `${where}: no ${k}`);
        for (const [k, n] of Object.entries(expect.lengths ?? {})) assert.equal(result[k].length, n, `${where}: length of ${k}`);
        if (step.save) saved[step.save] = result;
      }
    } finally {
      client.close();
    }
  });
}
