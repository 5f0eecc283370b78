/**
 * Logs written before leaf format v3 still verify (issue 17: "logs written before it still
 * verify"): the verifier built from this tree must pass the v2 export fixture
 * (test/helpers/log-fixtures.ts) unchanged and still catch a changed byte in it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runScript } from './helpers/cli.js';
import { decodeLeaf } from '../src/log/leaf.js';
import { MIXED_LOG_FIXTURE, V2_LOG_FIXTURE as FIXTURE, V2_LOG_FIXTURE_VKEY as FIXTURE_VKEY } from './helpers/log-fixtures.js';
const dir = mkdtempSync(join(tmpdir(), 'paylog-compat-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a log written in leaf format v2, verified by this verifier', () => {
  it('every leaf of the fixture is format v2, and verify-log --file passes it: 13 entries, the shred reported', async () => {
    const entries = readFileSync(FIXTURE, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((o) => o.type === 'entry');
    expect(entries).toHaveLength(13);
    for (const e of entries) expect(decodeLeaf(Buffer.from(e.leaf, 'base64')).v).toBe(2);
    const r = await runScript('verify-log', ['--file', FIXTURE, '--log-key', FIXTURE_VKEY, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ ok: true, entriesVerified: 13, treeSize: 13, leafTypes: { key_event: 9, transaction: 3, access: 1 } });
    expect(report.shredded.ranges).toEqual([[2, 2]]);
  });

  it('one changed byte in one of its leaves fails verification, naming that index', async () => {
    const lines = readFileSync(FIXTURE, 'utf8').trim().split('\n');
    const at = lines.findIndex((l) => JSON.parse(l).type === 'entry' && JSON.parse(l).index === 4);
    const e = JSON.parse(lines[at]!);
    const leaf = Buffer.from(e.leaf, 'base64');
    leaf[leaf.length - 1] = leaf[leaf.length - 1]! ^ 1;
    lines[at] = JSON.stringify({ ...e, leaf: leaf.toString('base64') });
    const bad = join(dir, 'bad.ndjson');
    writeFileSync(bad, lines.join('\n') + '\n');
    const r = await runScript('verify-log', ['--file', bad, '--log-key', FIXTURE_VKEY, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).failures[0].index).toBe(4);
  });

  it('the same log continued by this release (v2 entries, then v3 ones) verifies; its v3 transaction sealed to a pre-v3 epoch is reported as not checkable, not failed', async () => {
    const entries = readFileSync(MIXED_LOG_FIXTURE, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((o) => o.type === 'entry');
    const versions = entries.map((e) => decodeLeaf(Buffer.from(e.leaf, 'base64')).v);
    expect(versions).toEqual([...Array(13).fill(2), 3, 3, 3]);
    const r = await runScript('verify-log', ['--file', MIXED_LOG_FIXTURE, '--log-key', FIXTURE_VKEY, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ ok: true, entriesVerified: 16, treeSize: 16, leafTypes: { key_event: 9, transaction: 4, access: 3 } });
    expect(report.epochKeys.legacyTransactions).toBe(4);
  });
});
