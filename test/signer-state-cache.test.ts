/**
 * The signer state file's load verdict is kept while the file is unchanged (issue 20: the
 * publisher loads it twice per publication), and ONLY while it is unchanged: a file replaced,
 * rewritten in place with the same size, or rewritten with its timestamps put back is read and
 * verified again, and refused when it does not verify (src/log/signer-state.ts contract). Likewise
 * the remembered checkpoint verdict (src/log/checkpoint.ts `verifyCheckpointRemembered`).
 */
import { generateKeyPairSync, sign as edSign } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatCheckpointBody, verifyCheckpointRemembered } from '../src/log/checkpoint.js';
import { signNote, type NoteSigner } from '../src/log/note.js';
import { SignerStateFile } from '../src/log/signer-state.js';

const ORIGIN = 'signer-state.test/log';
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
const signer: NoteSigner = { name: ORIGIN, publicKey: raw, sign: async (m) => edSign(null, m, privateKey) };
const verifiers = [{ name: ORIGIN, publicKey: raw }];

async function checkpoint(size: number, fill: number) {
  const rootHash = Buffer.alloc(32, fill);
  return { size, rootHash, note: await signNote(formatCheckpointBody({ origin: ORIGIN, size, rootHash }), [signer]) };
}

/** Past the file system's timestamp granularity (coarse kernel clock), so a rewrite gets a new ctime. */
const settle = () => new Promise((r) => setTimeout(r, 50));

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function stateFile() {
  const dir = mkdtempSync(join(tmpdir(), 'paylog-signer-state-'));
  dirs.push(dir);
  const path = join(dir, 'signer', 'last-checkpoint');
  return { path, file: new SignerStateFile(path, { origin: ORIGIN, verifiers }) };
}

/** `text` with one base64 character of its signature changed: same length, no longer verifies. */
function corrupt(text: string): string {
  const i = text.lastIndexOf(' ') + 10;
  return text.slice(0, i) + (text[i] === 'A' ? 'B' : 'A') + text.slice(i + 1);
}

describe('signer state file: the verdict is reused only while the file is unchanged', () => {
  it('loads what it saved, again and again, and the saved note is the file', async () => {
    const { path, file } = stateFile();
    const c = await checkpoint(5, 1);
    await file.save(c);
    expect(readFileSync(path, 'utf8')).toBe(c.note);
    for (let i = 0; i < 3; i++) expect(await file.load()).toMatchObject({ size: 5, note: c.note });
  });

  it('a file rewritten in place with the same size and its timestamps put back is read again and refused', async () => {
    const { path, file } = stateFile();
    await file.save(await checkpoint(5, 1));
    await file.load();
    await settle();
    const before = statSync(path, { bigint: true });
    const forged = corrupt(readFileSync(path, 'utf8'));
    writeFileSync(path, forged);
    // The modification time put back to the nanosecond (utimes takes a double: not exact).
    const ns = before.mtimeNs;
    execFileSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, path]);
    const after = statSync(path, { bigint: true });
    expect([after.size, after.ino, after.mtimeNs]).toEqual([before.size, before.ino, before.mtimeNs]);
    await expect(file.load()).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
  });

  it('a file replaced by another (rename over it) is read again: a valid smaller one is what load returns', async () => {
    const { path, file } = stateFile();
    await file.save(await checkpoint(9, 2));
    await file.load();
    const older = await checkpoint(3, 3);
    writeFileSync(`${path}.other`, older.note);
    renameSync(`${path}.other`, path);
    expect(await file.load()).toMatchObject({ size: 3, note: older.note });
  });

  it('a file deleted after a load is gone (null), not the remembered checkpoint', async () => {
    const { path, file } = stateFile();
    await file.save(await checkpoint(4, 4));
    await file.load();
    rmSync(path);
    expect(await file.load()).toBeNull();
  });
});

describe('verifyCheckpointRemembered: the last verdict per verifier set, for that note and those keys only', () => {
  it('the same note verifies again; a forged note right after it does not', async () => {
    const c = await checkpoint(7, 5);
    const vs = [{ name: ORIGIN, publicKey: raw }];
    expect(verifyCheckpointRemembered(c.note, vs)).toMatchObject({ size: 7 });
    expect(verifyCheckpointRemembered(c.note, vs).rootHash).toEqual(c.rootHash);
    expect(() => verifyCheckpointRemembered(corrupt(c.note), vs)).toThrow();
  });

  it('the same verifier array with another key in it: the remembered note is checked again (and fails)', async () => {
    const c = await checkpoint(8, 6);
    const vs = [{ name: ORIGIN, publicKey: raw }];
    verifyCheckpointRemembered(c.note, vs);
    const other = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x as string;
    vs[0] = { name: ORIGIN, publicKey: Buffer.from(other, 'base64url') };
    expect(() => verifyCheckpointRemembered(c.note, vs)).toThrow();
  });
});
