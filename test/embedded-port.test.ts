/**
 * Embedded PostgreSQL and a port another program holds (src/db/embedded-process.ts): the server's
 * refusal to bind is recognised (PortTakenError, the error startEmbeddedPostgres chooses a new
 * port on when it chose the port itself), and no server is left running after it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { PortTakenError } from '../src/db/embedded-process.js';
import { query } from './helpers/db.js';

const dataDir = mkdtempSync(join(tmpdir(), 'paylog-embedded-port-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

async function holdPort(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

describe('embedded PostgreSQL on a taken port', () => {
  it('a port another program holds is refused as PortTakenError, and no server is left running; a chosen port then works', async () => {
    const held = await holdPort();
    try {
      const e = await startEmbeddedPostgres({ dataDir, port: held.port }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(PortTakenError);
      expect(String((e as Error).message)).toMatch(/exited during start-up/);
    } finally {
      await new Promise((r) => held.server.close(r));
    }
    // The same cluster starts on a port of its own choosing (nothing of the failed start is left).
    const server = await startEmbeddedPostgres({ dataDir });
    try {
      expect(await query<{ one: number }>(server.adminUrl, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await server.stop();
    }
  }, 120_000);
});
