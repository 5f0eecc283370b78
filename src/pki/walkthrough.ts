/** The start-up text for development: where the dev PKI is and curl commands that work. */
import { relative } from 'node:path';
import type { DevPki } from './dev-pki.js';

export function devWalkthrough(url: string, pki: DevPki, logKey?: string): string {
  const rel = (p: string) => {
    const r = relative(process.cwd(), p);
    return r.startsWith('..') ? p : r;
  };
  const who = (name: string) => {
    const p = pki.principals[name];
    return p ? `--cacert ${rel(pki.caPath)} --cert ${rel(p.certPath)} --key ${rel(p.keyPath)}` : '';
  };
  const body = JSON.stringify({
    transactionId: 'ord-2026-000123',
    processor: 'acme',
    amount: { value: 12345, currency: 'USD' },
    paymentMethod: { type: 'card', pan: '4111111111111111', expiryMonth: 12, expiryYear: new Date().getUTCFullYear() + 3, holderName: 'Jane Q Customer' },
    metadata: { invoice: 'INV-77' },
  });
  return [
    '',
    `paylog is listening on ${url}`,
    `DEV-ONLY certificates and keys are in ${rel(pki.dir)}/ (never use them in production).`,
    '',
    '# submit a transaction (checkout)',
    `curl -sS ${who('checkout')} -H 'content-type: application/json' -d '${body}' ${url}/v1/transactions`,
    '# read its masked metadata (checkout)',
    `curl -sS ${who('checkout')} ${url}/v1/transactions/ord-2026-000123`,
    '# release it to its processor (processor acme)',
    `curl -sS ${who('processor-acme')} -H 'content-type: application/json' -d '{"purpose":"authorize"}' ${url}/v1/transactions/ord-2026-000123/release`,
    '# latest signed checkpoint and verification (auditor)',
    `curl -sS ${who('auditor')} ${url}/v1/log/checkpoint`,
    `npm run verify-log -- --url ${url} ${who('auditor')}${logKey ? ` --log-key '${logKey}'` : ' --trust-server-key'} --state data/auditor-state.json`,
    '',
  ].join('\n');
}
