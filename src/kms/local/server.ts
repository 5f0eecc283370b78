/**
 * Local, DEV-ONLY, AWS-KMS-compatible endpoint: the HTTP server.
 *
 * When no AWS settings are present paylog starts this on loopback and points the real
 * `@aws-sdk/client-kms` client at it, so the same code path runs in development and production.
 * The parts: the AWS JSON 1.1 wire protocol (./wire.ts), the operations (./operations/),
 * key resolution (./keys.ts), the ciphertext blob (./blob.ts), key deletion (./deletion.ts) and
 * the key store file (./keystore.ts).
 *
 * Contract: it MUST listen on loopback only and is never used with AWS settings. `close()`
 * resolves only after in-flight handlers have finished their key-store writes.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KeyStore } from './keystore.js';
import { completeDueDeletions } from './deletion.js';
import { buildOperations } from './operations/index.js';
import { handleRequest, operationNameOf } from './wire.js';

export interface LocalKmsEndpoint {
  readonly url: string;
  /** Requests answered so far, by operation name (tests count KMS calls here). */
  readonly requestCounts: ReadonlyMap<string, number>;
  close(): Promise<void>;
}

const LOCAL_KMS_DEFAULT_HOST = '127.0.0.1';

/** Starts the endpoint on loopback (port 0 = any free port) backed by `<keyStoreDir>/keystore.json`. */
export async function startLocalKms(opts: {
  keyStoreDir: string;
  host?: string;
  port?: number;
  /** The endpoint's clock (tests: a waiting period that has ended); default the system clock. */
  clock?: () => Date;
}): Promise<LocalKmsEndpoint> {
  const host = opts.host ?? LOCAL_KMS_DEFAULT_HOST;
  if (!isLoopbackHost(host)) {
    throw new Error('the local KMS endpoint is dev-only and listens on loopback only');
  }
  const store = await KeyStore.open(opts.keyStoreDir);
  const clock = opts.clock ?? (() => new Date());
  const nowSeconds = () => Math.floor(clock().getTime() / 1000);
  const operations = buildOperations(store, nowSeconds);
  const inFlight = new Set<Promise<void>>();
  const requestCounts = new Map<string, number>();

  const server = createServer((req, res) => {
    const name = operationNameOf(req.headers['x-amz-target']);
    requestCounts.set(name, (requestCounts.get(name) ?? 0) + 1);
    const p = handleRequest(operations, req, res, async () => {
      store.refresh();
      await completeDueDeletions(store, nowSeconds());
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  return {
    url,
    requestCounts,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // The SDK keeps connections alive; drop them so close() does not wait for idle timeouts.
      server.closeAllConnections();
      await closed;
      // Let handlers whose connection was dropped finish their key-store writes.
      await Promise.allSettled([...inFlight]);
    },
  };
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
