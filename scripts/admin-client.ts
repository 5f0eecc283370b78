/**
 * Shared by `npm run keys` and `npm run retention`: calls paylog's admin routes over mTLS with an
 * admin certificate, so the actor recorded in the log is that certificate.
 * Defaults: `https://127.0.0.1:$PAYLOG_PORT` (8443) and the dev PKI under `$PAYLOG_DATA_DIR/pki`.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';

export interface AdminConnection {
  url: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export const ADMIN_OPTIONS = {
  url: { type: 'string' },
  cacert: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
} as const;

export function adminConnection(v: { url?: string | undefined; cacert?: string | undefined; cert?: string | undefined; key?: string | undefined }): AdminConnection {
  const pki = join(resolve(process.env.PAYLOG_DATA_DIR ?? './data'), 'pki');
  return {
    url: (v.url ?? `https://127.0.0.1:${process.env.PAYLOG_PORT ?? '8443'}`).replace(/\/$/, ''),
    ca: readFileSync(v.cacert ?? join(pki, 'ca.pem')),
    cert: readFileSync(v.cert ?? join(pki, 'admin.pem')),
    key: readFileSync(v.key ?? join(pki, 'admin-key.pem')),
  };
}

/** One admin call; resolves with status and parsed JSON body. Rejects only on transport failure. */
export function adminCall(c: AdminConnection, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolvePromise, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      c.url + path,
      { method, ca: c.ca, cert: c.cert, key: c.key, timeout: 120_000, headers: payload ? { 'content-type': 'application/json' } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = { raw: text };
          }
          resolvePromise({ status: res.statusCode ?? 0, json });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Prints the result and returns the exit code: 0 ok, 1 refused by paylog. */
export function report(r: { status: number; json: unknown }): number {
  process.stdout.write(JSON.stringify(r.json, null, 2) + '\n');
  return r.status >= 200 && r.status < 300 ? 0 : 1;
}
