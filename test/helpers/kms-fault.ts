/**
 * A loopback TCP front for a KMS endpoint that can be switched, at any moment, between
 * - `pass`: every connection is piped to the real endpoint;
 * - `stall`: connections are accepted and read, and never answered;
 * - `http500`: every request is answered `500 Internal Server Error`;
 * - `refuse`: nothing listens on the port (connect → ECONNREFUSED).
 * Switching closes every open connection, so keep-alive sockets of the client cannot bypass it.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export type KmsFaultMode = 'pass' | 'stall' | 'http500' | 'refuse';

export interface KmsFaultFront {
  readonly url: string;
  set(mode: KmsFaultMode): Promise<void>;
  close(): Promise<void>;
}

const HTTP_500 =
  'HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}';

export async function startKmsFaultFront(upstreamUrl: string): Promise<KmsFaultFront> {
  const upstream = new URL(upstreamUrl);
  const sockets = new Set<Socket>();
  let mode: KmsFaultMode = 'pass';
  let port = 0;

  const onConnection = (client: Socket) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (mode === 'stall') {
      client.resume(); // read and discard; never answer
    } else if (mode === 'http500') {
      client.once('data', () => client.end(HTTP_500));
    } else {
      const up = connect(Number(upstream.port), upstream.hostname);
      sockets.add(up);
      up.on('close', () => (sockets.delete(up), client.destroy()));
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
      client.pipe(up).pipe(client);
    }
  };

  let server: Server | undefined;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer(onConnection);
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        const a = s.address();
        port = typeof a === 'object' && a ? a.port : port;
        server = s;
        resolve();
      });
    });
  const unlisten = () =>
    new Promise<void>((resolve) => {
      const s = server;
      server = undefined;
      if (!s) return resolve();
      s.close(() => resolve());
    });
  await listen();

  return {
    url: `http://127.0.0.1:${port}`,
    set: async (next) => {
      mode = next;
      for (const s of sockets) s.destroy();
      sockets.clear();
      if (next === 'refuse') await unlisten();
      else if (!server) await listen();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await unlisten();
    },
  };
}
