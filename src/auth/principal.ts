/**
 * The authenticated caller, taken from the verified client certificate (PCI DSS 8.2.1: unique
 * identity; 8.3: strong authentication by certificate).
 */
import type { TLSSocket } from 'node:tls';
import { certificateFingerprint, certificateSerialHex, identityFromPeerCertificate, type Role } from '../pki/identity.js';

export type { Role };

export interface Principal {
  role: Role;
  name: string;
  /** "sha256:<hex of DER>" of the client certificate. */
  certificateFingerprint: string;
  serialHex: string;
}

/**
 * Reads the principal from a TLS socket whose client certificate chain was verified against
 * paylog's CA. Returns null when there is no verified certificate or it names no principal.
 */
export function principalFromSocket(socket: TLSSocket): Principal | null {
  if (!socket.authorized) return null;
  // The peer certificate cannot change on a TLS connection (renegotiation is off in Node's
  // server by default): parse it once per connection. Revocation is still checked per request.
  const cached = perSocket.get(socket);
  if (cached !== undefined) return cached;
  const p = readPrincipal(socket);
  perSocket.set(socket, p);
  return p;
}

const perSocket = new WeakMap<TLSSocket, Principal | null>();

function readPrincipal(socket: TLSSocket): Principal | null {
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return null;
  const identity = identityFromPeerCertificate(cert);
  if (!identity) return null;
  return {
    role: identity.role,
    name: identity.name,
    certificateFingerprint: certificateFingerprint(cert),
    serialHex: certificateSerialHex(cert),
  };
}
