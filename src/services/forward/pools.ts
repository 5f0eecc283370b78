/**
 * One pooled keep-alive client per destination (issue 18 item 5), rebuilt when the destination's
 * verified configuration changes. The client key is unwrapped only to build the pool and zeroed.
 */
import { PaylogError } from '../../errors.js';
import type { HttpClient } from '../../net/http.js';
import { forwardClient } from '../../net/forward-egress.js';
import type { Destination, DestinationService } from './destinations.js';

export class ForwardPools {
  private readonly pools = new Map<string, { digest: string; client: Promise<HttpClient> }>();

  constructor(private readonly destinations: DestinationService) {}

  /** The client for `d` (built on first use, or after its configuration changed). */
  async clientFor(d: Destination): Promise<HttpClient> {
    const id = `${d.processor}/${d.name}`;
    const digest = d.configSha256.toString('hex');
    const held = this.pools.get(id);
    if (held?.digest === digest) return await held.client;
    if (held) void held.client.then((c) => c.close()).catch(() => undefined);
    const client = this.build(d);
    this.pools.set(id, { digest, client });
    client.catch(() => {
      if (this.pools.get(id)?.client === client) this.pools.delete(id);
    });
    return await client;
  }

  private async build(d: Destination): Promise<HttpClient> {
    let key: Buffer | undefined;
    try {
      key = await this.destinations.clientKey(d);
    } catch (e) {
      throw new PaylogError('DESTINATION_TLS_FAILED', 'the destination\'s client key could not be opened', undefined, { cause: e });
    }
    try {
      const c = d.config;
      return forwardClient({
        url: c.url,
        caPem: c.caPem,
        pins: c.pins,
        clientCertPem: c.clientCertPem,
        clientKeyPem: key?.toString('utf8'),
        allowPrivateNetwork: c.allowPrivateNetwork,
        timeoutMs: c.timeoutMs,
      });
    } finally {
      key?.fill(0);
    }
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.client.then((c) => c.destroy()).catch(() => undefined)));
  }
}
