/**
 * The start-up text for development: where the dev PKI is and curl commands that work.
 * The example transaction (a public test card) is written to a file the curl command reads,
 * so no card number is ever printed to the console.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { DevPki } from './dev-pki.js';
import { PUBLIC_TEST_PAN } from '../validation/test-card.js';

const EXAMPLE_TRANSACTION_ID = 'ord-2026-000123';

/** Writes `<dir>/transaction.json`, an example checkout submission; returns its path. */
export function writeExampleTransaction(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'transaction.json');
  const body = {
    transactionId: EXAMPLE_TRANSACTION_ID,
    processor: 'acme',
    amount: { value: 12345, currency: 'USD' },
    paymentMethod: { type: 'card', pan: PUBLIC_TEST_PAN, expiryMonth: 12, expiryYear: new Date().getUTCFullYear() + 3, holderName: 'Jane Q Customer' },
    metadata: { invoice: 'INV-77' },
  };
  writeFileSync(path, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
  return path;
}

export function devWalkthrough(url: string, pki: DevPki, logKey?: string, examplePath?: string): string {
  const rel = (p: string) => {
    const r = relative(process.cwd(), p);
    return r.startsWith('..') ? p : r;
  };
  const who = (name: string) => {
    const p = pki.principals[name];
    return p ? `--cacert ${rel(pki.caPath)} --cert ${rel(p.certPath)} --key ${rel(p.keyPath)}` : '';
  };
  return [
    '',
    `paylog is listening on ${url}`,
    `DEV-ONLY certificates and keys are in ${rel(pki.dir)}/ (never use them in production).`,
    '',
    `# submit a transaction (checkout); the body, with a public test card, is in ${examplePath ? rel(examplePath) : 'transaction.json'}`,
    `curl -sS ${who('checkout')} -H 'content-type: application/json' -d @${examplePath ? rel(examplePath) : 'transaction.json'} ${url}/v1/transactions`,
    '# read its masked metadata (checkout)',
    `curl -sS ${who('checkout')} ${url}/v1/transactions/${EXAMPLE_TRANSACTION_ID}`,
    '# release it to its processor (processor acme)',
    `curl -sS ${who('processor-acme')} -H 'content-type: application/json' -d '{"purpose":"authorize"}' ${url}/v1/transactions/${EXAMPLE_TRANSACTION_ID}/release`,
    '# latest signed checkpoint and verification (auditor)',
    `curl -sS ${who('auditor')} ${url}/v1/log/checkpoint`,
    `npm run verify-log -- --url ${url} ${who('auditor')}${logKey ? ` --log-key '${logKey}'` : ' --trust-server-key'} --state data/auditor-state.json`,
    '',
  ].join('\n');
}
