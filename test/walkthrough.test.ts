/** The dev start-up text: working commands, and no card number on the console. */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { devWalkthrough, writeExampleTransaction } from '../src/pki/walkthrough.js';
import type { DevPki } from '../src/pki/dev-pki.js';
import { validateTransactionRequest } from '../src/validation/transaction.js';

const dir = mkdtempSync(join(tmpdir(), 'paylog-walkthrough-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dev walkthrough', () => {
  it('prints curl commands that read the example body from a file, never the card number', () => {
    const example = writeExampleTransaction(join(dir, 'examples'));
    const principal = (n: string) => ({ certPath: join(dir, `${n}.pem`), keyPath: join(dir, `${n}-key.pem`) });
    const pki = {
      dir,
      caPath: join(dir, 'ca.pem'),
      principals: { checkout: principal('checkout'), 'processor-acme': principal('processor-acme'), auditor: principal('auditor') },
    } as unknown as DevPki;
    const text = devWalkthrough('https://127.0.0.1:8443', pki, 'origin+01020304+AQ==', example);
    const body = JSON.parse(readFileSync(example, 'utf8'));
    expect(text).not.toContain(body.paymentMethod.pan);
    expect(text).toContain(`-d @${example}`);
    expect(text).toContain("--log-key 'origin+01020304+AQ=='");
    // The example is a valid submission today, and private to the operator.
    expect(validateTransactionRequest(body).transactionId).toBe('ord-2026-000123');
    expect(statSync(example).mode & 0o077).toBe(0);
  });
});
