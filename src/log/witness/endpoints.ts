/**
 * The configured witnesses: parsing PAYLOG_WITNESSES (`<url prefix> <vkey>` pairs) into
 * endpoints with their C2SP signed-note cosigner keys (tlog-cosignature key IDs).
 *
 * MUST: accept only http(s) URLs and vkeys that parse as cosigner keys; refuse a key listed twice.
 * MUST: throw a plain Error naming what is wrong (config reports it at start-up).
 * MUST NOT: contact a witness.
 */
import { cosignatureKeyId, parseCosignerVkey, type Cosigner } from './cosignature.js';

export interface WitnessEndpoint {
  /** URL prefix; requests go to `<prefix>/add-checkpoint`. */
  url: string;
  vkey: string;
  cosigner: Cosigner;
  /** `<name>+<hex key ID>`. */
  key: string;
}

/** Parses PAYLOG_WITNESSES: comma-separated `<url prefix> <vkey>` pairs. Throws Error naming what is wrong. */
export function parseWitnessList(value: string): WitnessEndpoint[] {
  const out: WitnessEndpoint[] = [];
  for (const item of value.split(',')) {
    const parts = item.trim().split(' ');
    if (parts.length !== 2) throw new Error('each witness must be "<url prefix> <vkey>" (one space), separated by commas');
    const [url, vkey] = parts as [string, string];
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new Error(`witness URL is not a URL: ${url}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`witness URL must be http(s): ${url}`);
    let cosigner: Cosigner;
    try {
      cosigner = parseCosignerVkey(vkey);
    } catch (e) {
      throw new Error(`witness key for ${url}: ${(e as Error).message}`);
    }
    const key = `${cosigner.name}+${cosignatureKeyId(cosigner.name, cosigner.publicKey).toString('hex')}`;
    if (out.some((w) => w.key === key)) throw new Error(`witness key listed twice: ${key}`);
    out.push({ url: url.replace(/\/+$/, ''), vkey, cosigner, key });
  }
  return out;
}
