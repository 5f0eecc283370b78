import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { formatCheckpointBody, parseCheckpointBody, verifyCheckpoint } from '../src/log/checkpoint.js';
import { EMPTY_ROOT } from '../src/log/merkle.js';
import {
  MAX_SIGNATURE_LINES,
  decodeBase64Strict,
  formatVerifierKey,
  keyId,
  openNote,
  parseVerifierKey,
  signNote,
  type NoteSigner,
} from '../src/log/note.js';

const EM = '\u2014';
const integrityFailure = expect.objectContaining({ code: 'INTEGRITY_FAILURE' });
const badRequest = expect.objectContaining({ code: 'BAD_REQUEST' });

// ---------------------------------------------------------------------------------------------
// Published vectors.

/** golang.org/x/mod/sumdb/note: package documentation and note_test.go. */
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG_LINE = `${EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;
const ENOCH_SIG_LINE = `${EM} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n`;
const GO_NOTE = `${GO_TEXT}\n${PETER_SIG_LINE}`;
const GO_NOTE_TWO_SIGS = `${GO_TEXT}\n${PETER_SIG_LINE}${ENOCH_SIG_LINE}`;

/** c2sp.org/signed-note example (C2SP/C2SP signed-note.md, commit d4c16da). */
const SPEC_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const SPEC_NOTE = `This is an example message.\n\n${EM} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n`;

/** The Go checksum database key (cmd/go) and two checkpoints it signed. */
const SUMDB_VKEY = 'sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8';
const SUMDB_CHECKPOINTS = [
  {
    size: 31700353,
    root: 'qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=',
    note: `go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n${EM} sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n`,
  },
  {
    size: 65209736,
    root: '5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=',
    note: `go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n${EM} sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n`,
  },
];

// ---------------------------------------------------------------------------------------------
// Helpers.

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function keyFromSeed(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

function rawPublicKey(privateKey: KeyObject): Buffer {
  return createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32);
}

/** A local signer standing in for KMS. */
function localSigner(name: string, privateKey: KeyObject): NoteSigner {
  return {
    name,
    publicKey: rawPublicKey(privateKey),
    sign: async (message) => cryptoSign(null, message, privateKey),
  };
}

function newSigner(name: string): NoteSigner {
  return localSigner(name, generateKeyPairSync('ed25519').privateKey);
}

/** Go sumdb/note signer key "PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>". */
function signerFromSkey(skey: string): NoteSigner {
  const parts = skey.split('+');
  const name = parts[2] as string;
  const material = Buffer.from(parts.slice(4).join('+'), 'base64');
  expect(material[0]).toBe(1);
  return localSigner(name, keyFromSeed(material.subarray(1)));
}

function verifierOf(s: NoteSigner): { name: string; publicKey: Buffer } {
  return { name: s.name, publicKey: s.publicKey };
}

// ---------------------------------------------------------------------------------------------

describe('key IDs and verifier keys (golang.org/x/mod/sumdb/note, C2SP vectors)', () => {
  it.each([PETER_VKEY, ENOCH_VKEY, SPEC_VKEY, SUMDB_VKEY])('parses and re-formats %s byte for byte', (vkey) => {
    const parsed = parseVerifierKey(vkey);
    expect(parsed.publicKey.length).toBe(32);
    expect(keyId(parsed.name, parsed.publicKey).equals(parsed.keyId)).toBe(true);
    expect(formatVerifierKey(parsed.name, parsed.publicKey)).toBe(vkey);
  });

  it('computes the published key ID c74f20a3 for PeterNeumann', () => {
    const { publicKey } = parseVerifierKey(PETER_VKEY);
    expect(keyId('PeterNeumann', publicKey).toString('hex')).toBe('c74f20a3');
    expect(keyId('PeterNeumanm', publicKey).toString('hex')).not.toBe('c74f20a3');
  });

  it('derives the published signer and verifier keys from their seeds', () => {
    const peter = signerFromSkey(PETER_SKEY);
    expect(formatVerifierKey(peter.name, peter.publicKey)).toBe(PETER_VKEY);
    // EnochRoot's key in note_test.go is Go's GenerateKey over an all-zero random stream.
    const enoch = localSigner('EnochRoot', keyFromSeed(Buffer.alloc(32)));
    expect(formatVerifierKey(enoch.name, enoch.publicKey)).toBe(ENOCH_VKEY);
  });

  it('rejects every proper substring and every single-character change of a verifier key', () => {
    for (let i = 0; i <= PETER_VKEY.length; i++) {
      for (let j = i + 1; j <= PETER_VKEY.length; j++) {
        if (i === 0 && j === PETER_VKEY.length) continue;
        expect(() => parseVerifierKey(PETER_VKEY.slice(i, j)), PETER_VKEY.slice(i, j)).toThrow(badRequest);
      }
    }
    for (let i = 0; i < PETER_VKEY.length; i++) {
      const changed = PETER_VKEY.slice(0, i) + String.fromCharCode(PETER_VKEY.charCodeAt(i) + 1) + PETER_VKEY.slice(i + 1);
      expect(() => parseVerifierKey(changed), changed).toThrow(badRequest);
    }
  });

  it('rejects bad forms of verifier keys', () => {
    const pk = parseVerifierKey(PETER_VKEY).publicKey;
    const id = keyId('PeterNeumann', pk).toString('hex');
    const b64 = (bytes: Buffer): string => bytes.toString('base64');
    const cases = [
      '',
      'PeterNeumann',
      `PeterNeumann+${id}`,
      `+${id}+${b64(Buffer.concat([Buffer.from([1]), pk]))}`, // empty name
      `Peter Neumann+${keyId('Peter Neumann', pk).toString('hex')}+${b64(Buffer.concat([Buffer.from([1]), pk]))}`,
      `PeterNeumann+${id}+${b64(Buffer.concat([Buffer.from([2]), pk]))}`, // other signature type
      `PeterNeumann+${id}+${b64(Buffer.concat([Buffer.from([1]), pk.subarray(1)]))}`, // short key
      `PeterNeumann+${id}+${b64(Buffer.concat([Buffer.from([1]), pk, Buffer.from([0])]))}`, // long key
      `PeterNeumann+0${id}+${b64(Buffer.concat([Buffer.from([1]), pk]))}`, // 9 hex digits
      `PeterNeumann+${id}+${b64(Buffer.concat([Buffer.from([1]), pk]))}=`, // stray padding
      `PeterNeumann+${id}+ ${b64(Buffer.concat([Buffer.from([1]), pk]))}`,
    ];
    for (const c of cases) expect(() => parseVerifierKey(c), c).toThrow(badRequest);
    expect(() => formatVerifierKey('a+b', pk)).toThrow(badRequest);
    expect(() => formatVerifierKey('a\u00a0b', pk)).toThrow(badRequest);
    expect(() => formatVerifierKey('ok', pk.subarray(1))).toThrow(badRequest);
  });

  it('decodeBase64Strict accepts only canonical padded standard base64', () => {
    expect(decodeBase64Strict('AQ==')?.toString('hex')).toBe('01');
    expect(decodeBase64Strict('')?.length).toBe(0);
    for (const bad of ['AQ', 'AR==', 'AQ=', 'A Q==', 'AQ==\n', '-_8=', 'AQ=A']) {
      expect(decodeBase64Strict(bad), bad).toBeUndefined();
    }
  });
});

describe('openNote with published notes', () => {
  it('opens the Go sumdb/note example with the PeterNeumann key', () => {
    const opened = openNote(GO_NOTE, [parseVerifierKey(PETER_VKEY)]);
    expect(opened).toEqual({
      text: GO_TEXT,
      verifiedBy: ['PeterNeumann'],
      verifiedKeys: ['PeterNeumann+c74f20a3'],
      unknown: 0,
    });
  });

  it('opens the C2SP signed-note example', () => {
    const opened = openNote(SPEC_NOTE, [parseVerifierKey(SPEC_VKEY)]);
    expect(opened.text).toBe('This is an example message.\n');
    expect(opened.verifiedBy).toEqual(['example.com/foo']);
  });

  it('opens the doubly signed Go example with either or both keys', () => {
    const both = openNote(GO_NOTE_TWO_SIGS, [parseVerifierKey(PETER_VKEY), parseVerifierKey(ENOCH_VKEY)]);
    expect(both.verifiedBy).toEqual(['PeterNeumann', 'EnochRoot']);
    expect(both.unknown).toBe(0);
    const enochOnly = openNote(GO_NOTE_TWO_SIGS, [parseVerifierKey(ENOCH_VKEY)]);
    expect(enochOnly.verifiedBy).toEqual(['EnochRoot']);
    expect(enochOnly.unknown).toBe(1);
  });

  it('rejects the Go example when the text is modified', () => {
    const tampered = GO_NOTE.replace('cryptography', 'cryptographY');
    expect(() => openNote(tampered, [parseVerifierKey(PETER_VKEY)])).toThrow(integrityFailure);
  });

  it('rejects the Go example when only other keys are trusted', () => {
    expect(() => openNote(GO_NOTE, [parseVerifierKey(ENOCH_VKEY)])).toThrow(integrityFailure);
    expect(() => openNote(GO_NOTE, [])).toThrow(integrityFailure);
  });
});

describe('signNote', () => {
  it('reproduces the published Go note byte for byte (Ed25519 is deterministic)', async () => {
    expect(await signNote(GO_TEXT, [signerFromSkey(PETER_SKEY)])).toBe(GO_NOTE);
  });

  it('reproduces the published doubly signed note (second signature line = key rotation)', async () => {
    const enoch = localSigner('EnochRoot', keyFromSeed(Buffer.alloc(32)));
    expect(await signNote(GO_TEXT, [signerFromSkey(PETER_SKEY), enoch])).toBe(GO_NOTE_TWO_SIGS);
  });

  it('round-trips with generated keys and signs exactly the text bytes', async () => {
    const s = newSigner('paylog.example/log');
    const seen: Buffer[] = [];
    const spy: NoteSigner = { ...s, sign: async (m) => (seen.push(m), s.sign(m)) };
    const text = 'paylog.example/log\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n';
    const note = await signNote(text, [spy]);
    expect(seen).toEqual([Buffer.from(text, 'utf8')]);
    expect(note.startsWith(`${text}\n${EM} paylog.example/log `)).toBe(true);
    expect(note.endsWith('\n')).toBe(true);
    expect(openNote(note, [verifierOf(s)])).toMatchObject({ text, verifiedBy: ['paylog.example/log'], unknown: 0 });
  });

  it('keeps texts that contain blank lines and non-ASCII characters intact', async () => {
    const s = newSigner('k');
    const text = 'Ognuno sta solo sul cuor della terra\n\ned è subito sera.\n\n';
    expect(openNote(await signNote(text, [s]), [verifierOf(s)]).text).toBe(text);
  });

  it('rejects bad texts, signers and signatures', async () => {
    const s = newSigner('k');
    await expect(signNote('no newline', [s])).rejects.toEqual(badRequest);
    await expect(signNote('tab\there\n', [s])).rejects.toEqual(badRequest);
    await expect(signNote('lone \ud800 surrogate\n', [s])).rejects.toEqual(badRequest);
    await expect(signNote('ok\n', [])).rejects.toEqual(badRequest);
    await expect(signNote('ok\n', [{ ...s, name: 'has space' }])).rejects.toEqual(badRequest);
    await expect(signNote('ok\n', [{ ...s, name: 'has+plus' }])).rejects.toEqual(badRequest);
    // A signer (KMS) returning a signature by another key, or garbage, is caught before emitting.
    const other = newSigner('k');
    await expect(signNote('ok\n', [{ ...s, sign: other.sign }])).rejects.toEqual(integrityFailure);
    await expect(signNote('ok\n', [{ ...s, sign: async () => Buffer.alloc(64) }])).rejects.toEqual(integrityFailure);
  });
});

describe('openNote trust rules (c2sp.org/signed-note §Signatures)', () => {
  const text = 'paylog.example/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n';

  it('ignores signatures from unknown keys, including same-name and same-ID look-alikes', async () => {
    const trusted = newSigner('paylog.example/log');
    const stranger = newSigner('witness.example');
    const sameName = newSigner('paylog.example/log'); // same name, different key ID
    const note = await signNote(text, [stranger, trusted, sameName]);
    const opened = openNote(note, [verifierOf(trusted)]);
    expect(opened.verifiedBy).toEqual(['paylog.example/log']);
    expect(opened.unknown).toBe(2);
    // Same key ID but a different name is a different (unknown) key: re-label the trusted line.
    const single = await signNote(text, [trusted]);
    const trustedLine = single.slice(text.length + 1);
    const relabeled = trustedLine.replace(`${EM} paylog.example/log `, `${EM} other.example/log `);
    expect(relabeled).not.toBe(trustedLine);
    expect(() => openNote(`${text}\n${relabeled}`, [verifierOf(trusted)])).toThrow(integrityFailure);
    expect(openNote(`${text}\n${relabeled}${trustedLine}`, [verifierOf(trusted)])).toMatchObject({
      verifiedBy: ['paylog.example/log'],
      unknown: 1,
    });
  });

  it('a known key whose signature fails rejects the whole note, even if another key verifies', async () => {
    const a = newSigner('a.example');
    const b = newSigner('b.example');
    const note = await signNote(text, [a, b]);
    // Corrupt b's signature (flip a bit in the last signature byte).
    const lines = note.slice(0, -1).split('\n');
    const bLine = lines[lines.length - 1] as string;
    const blob = Buffer.from(bLine.split(' ')[2] as string, 'base64');
    blob[blob.length - 1] = (blob[blob.length - 1] as number) ^ 1;
    const corrupted = note.replace(bLine, `${EM} b.example ${blob.toString('base64')}`);
    expect(openNote(corrupted, [verifierOf(a)]).verifiedBy).toEqual(['a.example']); // b unknown: ignored
    expect(() => openNote(corrupted, [verifierOf(a), verifierOf(b)])).toThrow(integrityFailure);
  });

  it('rejects a wrong key, a modified text and a modified signature', async () => {
    const s = newSigner('paylog.example/log');
    const note = await signNote(text, [s]);
    // Wrong key: a different public key under the same name is simply unknown -> nothing verified.
    expect(() => openNote(note, [verifierOf(newSigner('paylog.example/log'))])).toThrow(integrityFailure);
    // Modified text.
    expect(() => openNote(note.replace('\n1\n', '\n2\n'), [verifierOf(s)])).toThrow(integrityFailure);
    // Modified signature, every byte of it.
    const line = note.slice(text.length + 1, -1);
    const prefix = `${EM} paylog.example/log `;
    const blob = Buffer.from(line.slice(prefix.length), 'base64');
    for (let i = 4; i < blob.length; i++) {
      const bad = Buffer.from(blob);
      bad[i] = (bad[i] as number) ^ 0x80;
      expect(() => openNote(`${text}\n${prefix}${bad.toString('base64')}\n`, [verifierOf(s)]), `byte ${i}`).toThrow(
        integrityFailure,
      );
    }
    // Modified key ID bytes make the signature unknown, so nothing verifies.
    const badId = Buffer.from(blob);
    badId[0] = (badId[0] as number) ^ 1;
    expect(() => openNote(`${text}\n${prefix}${badId.toString('base64')}\n`, [verifierOf(s)])).toThrow(integrityFailure);
  });

  it('lists both keys of a rotation (same name, two keys)', async () => {
    const oldKey = newSigner('paylog.example/log');
    const newKey = newSigner('paylog.example/log');
    const note = await signNote(text, [oldKey, newKey]);
    const opened = openNote(note, [verifierOf(oldKey), verifierOf(newKey)]);
    expect(opened.verifiedBy).toEqual(['paylog.example/log', 'paylog.example/log']);
    expect(opened.verifiedKeys).toEqual([
      `paylog.example/log+${keyId(oldKey.name, oldKey.publicKey).toString('hex')}`,
      `paylog.example/log+${keyId(newKey.name, newKey.publicKey).toString('hex')}`,
    ]);
    // Clients that know only one of the keys still accept the note.
    expect(openNote(note, [verifierOf(newKey)]).unknown).toBe(1);
    expect(openNote(note, [verifierOf(oldKey)]).unknown).toBe(1);
  });

  it('counts a repeated signature line once', async () => {
    const s = newSigner('k.example');
    const note = await signNote(text, [s]);
    const line = note.slice(text.length + 1);
    const opened = openNote(note + line, [verifierOf(s)]);
    expect(opened.verifiedBy).toEqual(['k.example']);
    const stranger = `${EM} w.example ${Buffer.alloc(68, 1).toString('base64')}\n`;
    const other = `${EM} w.example ${Buffer.alloc(68, 2).toString('base64')}\n`;
    expect(openNote(note + stranger + stranger + other, [verifierOf(s)]).unknown).toBe(2);
  });

  it('rejects malformed notes', async () => {
    const s = newSigner('k.example');
    const note = await signNote(text, [s]);
    const line = note.slice(text.length + 1, -1);
    const v = [verifierOf(s)];
    const malformed: Array<[string, string]> = [
      ['no blank line', `${text}${line}\n`],
      ['no final newline', `${text}\n${line}`],
      ['empty signature block', `${text}\n`],
      ['hyphen instead of em dash', `${text}\n${line.replace(EM, '-')}\n`],
      ['en dash instead of em dash', `${text}\n${line.replace(EM, '\u2013')}\n`],
      ['no space after dash', `${text}\n${line.replace(`${EM} `, EM)}\n`],
      ['missing signature', `${text}\n${EM} k.example\n`],
      ['empty signature', `${text}\n${EM} k.example \n`],
      ['empty name', `${text}\n${EM}  ${line.split(' ')[2]}\n`],
      ['non-canonical base64', `${text}\n${line.replace(/=$/, '')}\n`],
      ['signature of 4 bytes', `${text}\n${EM} k.example AAAAAA==\n`],
      ['trailing text after signatures', `${note}trailer\n`],
      ['carriage return', `${text}\n${line}\r\n`],
      ['control character in text', `${text.replace('log', 'l\u0007g')}\n${line}\n`],
      ['lone surrogate', `${text}\n${line}\n`.replace('paylog', 'pay\ud800log')],
      ['a trailing space', `${text}\n${line} \n`],
    ];
    for (const [why, bad] of malformed) expect(() => openNote(bad, v), why).toThrow(integrityFailure);
    // A malformed line rejects the note even next to a good signature.
    const blob = Buffer.alloc(68, 7).toString('base64');
    for (const name of ['bad+name', 'bad\u00a0name', 'bad\u2003name']) {
      expect(() => openNote(`${note}${EM} ${name} ${blob}\n`, v), name).toThrow(integrityFailure);
    }
    expect(openNote(`${note}${EM} good.name ${blob}\n`, v).unknown).toBe(1);
  });

  it('enforces the signature-line limit but accepts at least 16 signatures', async () => {
    const s = newSigner('k.example');
    const note = await signNote(text, [s]);
    const strangers = Array.from({ length: 15 }, (_, i) => newSigner(`w${i}.example`));
    const sixteen = await signNote(text, [s, ...strangers]);
    expect(openNote(sixteen, [verifierOf(s)]).unknown).toBe(15);
    const filler = Array.from(
      { length: MAX_SIGNATURE_LINES },
      (_, i) => `${EM} w${i}.example ${Buffer.alloc(68, i).toString('base64')}\n`,
    ).join('');
    expect(() => openNote(note + filler, [verifierOf(s)])).toThrow(integrityFailure);
  });

  it('validates the verifier list', async () => {
    const s = newSigner('k.example');
    const note = await signNote(text, [s]);
    // The same key listed twice is fine; an invalid entry is a configuration error.
    expect(openNote(note, [verifierOf(s), verifierOf(s)]).verifiedBy).toEqual(['k.example']);
    expect(() => openNote(note, [{ name: 'bad name', publicKey: s.publicKey }])).toThrow(badRequest);
    expect(() => openNote(note, [{ name: 'k.example', publicKey: s.publicKey.subarray(1) }])).toThrow(badRequest);
  });
});

describe('checkpoint body (c2sp.org/tlog-checkpoint)', () => {
  const root = Buffer.from('0a'.repeat(32), 'hex');

  it('formats the three lines exactly and parses them back', () => {
    const body = formatCheckpointBody({ origin: 'paylog.example/log', size: 20852163, rootHash: root });
    expect(body).toBe(`paylog.example/log\n20852163\n${root.toString('base64')}\n`);
    const parsed = parseCheckpointBody(body);
    expect(parsed.origin).toBe('paylog.example/log');
    expect(parsed.size).toBe(20852163);
    expect(parsed.rootHash.equals(root)).toBe(true);
    expect(parsed.extensions).toEqual([]);
  });

  it('formats the empty tree and extension lines', () => {
    const body = formatCheckpointBody({ origin: 'o', size: 0, rootHash: EMPTY_ROOT, extensions: ['ext one', 'two'] });
    expect(body).toBe('o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\ntwo\n');
    expect(parseCheckpointBody(body)).toEqual({ origin: 'o', size: 0, rootHash: EMPTY_ROOT, extensions: ['ext one', 'two'] });
    expect(parseCheckpointBody(formatCheckpointBody({ origin: 'o', size: Number.MAX_SAFE_INTEGER, rootHash: root })).size).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });

  it('parses the example checkpoint of the spec', () => {
    const parsed = parseCheckpointBody(
      'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n',
    );
    expect(parsed.origin).toBe('example.com/behind-the-sofa');
    expect(parsed.size).toBe(20852163);
    expect(parsed.rootHash.length).toBe(32);
  });

  it('rejects malformed bodies', () => {
    const r = root.toString('base64');
    const bad: Array<[string, string]> = [
      ['no final newline', `o\n1\n${r}`],
      ['two lines', `o\n1\n`],
      ['empty origin', `\n1\n${r}\n`],
      ['leading zero', `o\n01\n${r}\n`],
      ['double zero', `o\n00\n${r}\n`],
      ['sign', `o\n+1\n${r}\n`],
      ['negative', `o\n-1\n${r}\n`],
      ['space', `o\n 1\n${r}\n`],
      ['decimal point', `o\n1.0\n${r}\n`],
      ['exponent', `o\n1e3\n${r}\n`],
      ['hex', `o\n0x10\n${r}\n`],
      ['beyond 2^53 - 1', `o\n9007199254740992\n${r}\n`],
      ['empty size', `o\n\n${r}\n`],
      ['short root', `o\n1\n${root.subarray(1).toString('base64')}\n`],
      ['long root', `o\n1\n${Buffer.alloc(33).toString('base64')}\n`],
      ['unpadded root', `o\n1\n${r.replace(/=$/, '')}\n`],
      ['non-canonical root', `o\n1\n${r.slice(0, -2)}L=\n`],
      ['empty extension line', `o\n1\n${r}\n\n`],
      ['empty line between extensions', `o\n1\n${r}\nx\n\ny\n`],
      ['carriage return', `o\r\n1\n${r}\n`],
    ];
    for (const [why, text] of bad) expect(() => parseCheckpointBody(text), why).toThrow(integrityFailure);
  });

  it('refuses to format invalid bodies', () => {
    const cases = [
      { origin: '', size: 1, rootHash: root },
      { origin: 'a\nb', size: 1, rootHash: root },
      { origin: 'o', size: -1, rootHash: root },
      { origin: 'o', size: 1.5, rootHash: root },
      { origin: 'o', size: 2 ** 53, rootHash: root },
      { origin: 'o', size: 1, rootHash: root.subarray(1) },
      { origin: 'o', size: 1, rootHash: root, extensions: [''] },
      { origin: 'o', size: 1, rootHash: root, extensions: ['a\nb'] },
    ];
    for (const c of cases) expect(() => formatCheckpointBody(c), JSON.stringify(c)).toThrow(badRequest);
  });
});

describe('verifyCheckpoint', () => {
  it('verifies real checkpoints of the Go checksum database', () => {
    for (const cp of SUMDB_CHECKPOINTS) {
      const v = verifyCheckpoint(cp.note, [parseVerifierKey(SUMDB_VKEY)], { origin: 'go.sum database tree' });
      expect(v.origin).toBe('go.sum database tree');
      expect(v.size).toBe(cp.size);
      expect(v.rootHash.toString('base64')).toBe(cp.root);
      expect(v.verifiedBy).toEqual(['sum.golang.org']);
      expect(() => verifyCheckpoint(cp.note.replace(String(cp.size), String(cp.size + 1)), [parseVerifierKey(SUMDB_VKEY)])).toThrow(
        integrityFailure,
      );
    }
  });

  it('signs and verifies a paylog checkpoint, and enforces the expected origin', async () => {
    const s = newSigner('paylog.example/log');
    const root = Buffer.from('11'.repeat(32), 'hex');
    const note = await signNote(formatCheckpointBody({ origin: 'paylog.example/log', size: 42, rootHash: root }), [s]);
    const v = verifyCheckpoint(note, [verifierOf(s)], { origin: 'paylog.example/log' });
    expect(v).toMatchObject({ origin: 'paylog.example/log', size: 42, verifiedBy: ['paylog.example/log'], extensions: [] });
    expect(v.rootHash.equals(root)).toBe(true);
    expect(() => verifyCheckpoint(note, [verifierOf(s)], { origin: 'other.example/log' })).toThrow(integrityFailure);
  });

  it('rejects a validly signed note whose body is not a checkpoint', async () => {
    const s = newSigner('paylog.example/log');
    const note = await signNote('paylog.example/log\n042\nnot-base64\n', [s]);
    expect(() => verifyCheckpoint(note, [verifierOf(s)])).toThrow(integrityFailure);
  });
});
