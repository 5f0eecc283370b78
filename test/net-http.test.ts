/**
 * The one outbound HTTP module (src/net/http.ts): redirects are never followed, an answer beyond
 * the policy's size is not read, the destination hook can refuse, transport failures are typed.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpClient, HttpTransportError, ResponseTooLargeError, type EgressPolicy } from '../src/net/http.js';

let server: Server;
let base: string;
const hits: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    if (req.url === '/redirect') {
      res.writeHead(302, { location: '/target' }).end();
    } else if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.alloc(4096, 1));
    } else if (req.url === '/chunked') {
      res.writeHead(200);
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(1024, 2));
      res.end();
    } else if (req.url === '/trickle') {
      // Each chunk well within the between-chunks timeout; the whole answer takes ~10 s.
      res.writeHead(200);
      const t = setInterval(() => res.write('.'), 100);
      setTimeout(() => (clearInterval(t), res.end()), 10_000);
      res.on('close', () => clearInterval(t));
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const POLICY: EgressPolicy = { timeoutMs: 5_000, maxResponseBytes: 1024 };

describe('outbound HTTP module', () => {
  it('hands a redirect back as a response and never requests its target', async () => {
    const http = httpClient(POLICY);
    const res = await http.request(`${base}/redirect`);
    expect(res.status).toBe(302);
    expect(res.header('Location')).toBe('/target');
    expect(hits).not.toContain('/target');
    await http.close();
  });

  it('refuses an answer larger than the policy allows (declared or streamed)', async () => {
    const http = httpClient(POLICY);
    await expect(http.request(`${base}/big`)).rejects.toBeInstanceOf(ResponseTooLargeError);
    await expect(http.request(`${base}/chunked`)).rejects.toBeInstanceOf(ResponseTooLargeError);
    expect((await http.request(`${base}/small?q=1`)).body.toString()).toBe('ok');
    expect(hits).toContain('/small?q=1');
    await http.destroy();
  });

  it('bounds the whole request by its deadline, even when every chunk arrives in time', async () => {
    const http = httpClient({ ...POLICY, deadlineMs: 300 });
    const failure = await http.request(`${base}/trickle`).then(() => null, (e: unknown) => e);
    expect(failure).toBeInstanceOf(HttpTransportError);
    expect((failure as HttpTransportError).cause).toMatchObject({ name: 'TimeoutError' });
    await http.destroy();
  });

  it('lets the policy refuse a destination before connecting, and types transport failures', async () => {
    const refused = new Error('destination not allowed');
    const http = httpClient({ ...POLICY, checkDestination: (u) => { if (u.pathname === '/secret') throw refused; } });
    const before = hits.length;
    await expect(http.request(`${base}/secret`)).rejects.toBe(refused);
    expect(hits.length).toBe(before);
    await http.close();
    const closedPort = httpClient(POLICY);
    await expect(closedPort.request('http://127.0.0.1:1/')).rejects.toBeInstanceOf(HttpTransportError);
    await closedPort.destroy();
  });
});
