/**
 * The egress policy of forwards (issue 18): how paylog connects to a processor's registered
 * destination. Built on the one outbound HTTP module (./http.ts); like it, this file MUST stay
 * free of service code.
 *
 * Contract:
 * - `https` only; the certificate is verified against the system roots, or exactly the
 *   destination's CA when one is registered, and, with SPKI pins, its public key MUST hash to
 *   one of them (`sha256/<base64 of SHA-256(SubjectPublicKeyInfo DER)>`, RFC 7469 form).
 * - Redirects are never followed (./http.ts): a 3xx is the answer.
 * - Every address a destination host resolves to, or an address literal, is checked: private,
 *   loopback, link-local, CGNAT (100.64/10), unspecified, multicast, reserved, IPv4-mapped and
 *   NAT64 IPv6 addresses are refused unless the destination allows the private network. The
 *   socket connects to the address that was checked (the `lookup` hook), so a second DNS answer
 *   cannot redirect it (no DNS rebinding).
 * - Bounded: connect time, time to headers and between body chunks, whole-request deadline,
 *   response size. One pooled keep-alive client per destination configuration.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { checkServerIdentity as nodeCheckServerIdentity, type PeerCertificate } from 'node:tls';
import { HttpTransportError, ResponseTooLargeError, httpClient, type HttpClient } from './http.js';

/** Largest answer read from a destination (before and after decompression), bytes. */
export const FORWARD_MAX_RESPONSE_BYTES = 1024 * 1024;
/** Longest connect (TCP + TLS), ms (never more than the destination's own timeout). */
const FORWARD_CONNECT_TIMEOUT_MS = 5_000;
/** Keep-alive connections per destination. */
const FORWARD_CONNECTIONS_PER_DESTINATION = 64;

/** What the egress needs of a destination (the service verified it against its admin event). */
interface EgressDestination {
  /** `https://host[:port][/base]`. */
  url: string;
  caPem?: string | undefined;
  pins?: readonly string[] | undefined;
  clientCertPem?: string | undefined;
  /** The client key, unwrapped from KMS for building the pool only. */
  clientKeyPem?: string | undefined;
  allowPrivateNetwork: boolean;
  timeoutMs: number;
}

/** Why an egress attempt failed; `code` is the stable code logged as the forward's result. */
export class EgressError extends Error {
  constructor(
    readonly code: 'DESTINATION_NOT_ALLOWED' | 'DESTINATION_UNREACHABLE' | 'DESTINATION_TIMEOUT' | 'DESTINATION_TLS_FAILED' | 'DESTINATION_RESPONSE_TOO_LARGE',
    message: string,
  ) {
    super(message);
    this.name = 'EgressError';
  }
}

// Two lists: Node's BlockList also matches IPv4 addresses against IPv4-mapped IPv6 rules.
const PRIVATE_V4 = new BlockList();
const PRIVATE_V6 = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE_V4.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['::ffff:0:0', 96], // IPv4-mapped: refused whatever IPv4 address it carries
  ['64:ff9b::', 96], // NAT64
  ['64:ff9b:1::', 48],
  ['100::', 64], // discard
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const) {
  PRIVATE_V6.addSubnet(net, bits, 'ipv6');
}

/** True for an address in a private, loopback, link-local, CGNAT, mapped or reserved range. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true; // not an address: refuse
  return family === 4 ? PRIVATE_V4.check(address, 'ipv4') : PRIVATE_V6.check(address, 'ipv6');
}

function notAllowed(what: string): EgressError {
  return new EgressError('DESTINATION_NOT_ALLOWED', `${what} is in a private, loopback, link-local or reserved range and the destination does not allow the private network`);
}

/** A `lookup` that resolves, refuses private answers (unless allowed) and returns a checked address. */
function checkedLookup(allowPrivateNetwork: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { all: true, ...(options.family ? { family: options.family } : {}) }, (err, addresses: LookupAddress[]) => {
      if (err) return (callback as (e: Error | null, a: string, f: number) => void)(err, '', 0);
      const usable = addresses.filter((a) => allowPrivateNetwork || !isPrivateAddress(a.address));
      const chosen = usable[0];
      if (!chosen) return (callback as (e: Error | null, a: string, f: number) => void)(notAllowed(`every address of ${hostname}`), '', 0);
      // undici asks for one address; the socket connects to exactly this one.
      if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, [chosen]);
      else (callback as (e: null, a: string, f: number) => void)(null, chosen.address, chosen.family);
    });
  };
}

/** `sha256/<base64>` of a certificate's SubjectPublicKeyInfo (RFC 7469 pin form). */
export function spkiPin(certDer: Buffer): string {
  const spki = new X509Certificate(certDer).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256/${createHash('sha256').update(spki).digest('base64')}`;
}

/** Node's host name check, then the pins (when any). */
function pinnedIdentity(pins: readonly string[] | undefined): ((host: string, cert: PeerCertificate) => Error | undefined) | undefined {
  if (!pins || pins.length === 0) return undefined;
  return (host, cert) => {
    const err = nodeCheckServerIdentity(host, cert);
    if (err) return err;
    if (!pins.includes(spkiPin(cert.raw))) return Object.assign(new Error('the server key matches none of the pinned SPKI hashes'), { code: 'ERR_PAYLOG_PIN_MISMATCH' });
    return undefined;
  };
}

/** Refuses a URL that is not https, or an address literal in a private range (when not allowed). */
function checkForwardUrl(url: URL, allowPrivateNetwork: boolean): void {
  if (url.protocol !== 'https:') throw new EgressError('DESTINATION_NOT_ALLOWED', 'forwards go over https only');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0 && !allowPrivateNetwork && isPrivateAddress(host)) throw notAllowed(`address ${host}`);
}

/** A pooled client for one destination, applying this module's contract to every request. */
export function forwardClient(d: EgressDestination): HttpClient {
  const identity = pinnedIdentity(d.pins);
  return httpClient({
    timeoutMs: d.timeoutMs,
    connectTimeoutMs: Math.min(FORWARD_CONNECT_TIMEOUT_MS, d.timeoutMs),
    deadlineMs: d.timeoutMs,
    maxResponseBytes: FORWARD_MAX_RESPONSE_BYTES,
    connections: FORWARD_CONNECTIONS_PER_DESTINATION,
    tls: {
      ...(d.caPem ? { ca: d.caPem } : {}),
      ...(d.clientCertPem ? { cert: d.clientCertPem } : {}),
      ...(d.clientKeyPem ? { key: d.clientKeyPem } : {}),
    },
    checkDestination: (url) => checkForwardUrl(url, d.allowPrivateNetwork),
    lookup: checkedLookup(d.allowPrivateNetwork),
    ...(identity ? { checkServerIdentity: identity } : {}),
  });
}

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|ERR_PAYLOG_PIN_MISMATCH$|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|ERR_OSSL_|HOSTNAME_MISMATCH$)/;
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT', 'ABORT_ERR', 'UND_ERR_ABORTED']);

/** The stable code of a failed egress attempt (walks the error's causes). */
export function egressFailure(e: unknown): EgressError {
  if (e instanceof EgressError) return e;
  if (e instanceof ResponseTooLargeError) return new EgressError('DESTINATION_RESPONSE_TOO_LARGE', `the destination's answer exceeds ${e.limit} bytes`);
  const seen = new Set<unknown>();
  for (let c: unknown = e; c && typeof c === 'object' && !seen.has(c); c = (c as { cause?: unknown }).cause) {
    seen.add(c);
    if (c instanceof EgressError) return c;
    const code = String((c as { code?: unknown }).code ?? '');
    const name = String((c as { name?: unknown }).name ?? '');
    if (TLS_CODES.test(code)) return new EgressError('DESTINATION_TLS_FAILED', 'the destination\'s TLS certificate or handshake was not accepted');
    if (TIMEOUT_CODES.has(code) || name === 'TimeoutError') return new EgressError('DESTINATION_TIMEOUT', 'the destination did not answer in time');
  }
  if (e instanceof HttpTransportError || e instanceof Error) return new EgressError('DESTINATION_UNREACHABLE', 'the destination could not be reached');
  return new EgressError('DESTINATION_UNREACHABLE', 'the destination could not be reached');
}
