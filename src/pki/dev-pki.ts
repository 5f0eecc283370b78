/**
 * Development PKI written by `npm start` under `<PAYLOG_DATA_DIR>/pki/` (contract: "Dev PKI
 * files"): `ca.pem` + `ca-key.pem`, and `<name>.pem` + `<name>-key.pem` for `server`,
 * `checkout`, `processor-acme`, `processor-globex`, `auditor`, `admin`.
 *
 * Idempotent: existing, still-usable files are reused. A pair is (re)issued when a file is
 * missing or unreadable, the key does not match the certificate, the certificate was not issued
 * by the current CA, it expires within {@link DEV_RENEW_BEFORE_MS}, its identity is not the
 * expected one, or (server) it does not cover the requested hostnames. A missing or unusable
 * CA regenerates everything. Directory mode 0700, private keys 0600.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import {
  createCa,
  DEFAULT_CA_COMMON_NAME,
  issuePrincipalCertificate,
  issueServerCertificate,
  type CaMaterial,
} from './ca.js';
import { fingerprintOfDer, identityFromX509, type PrincipalIdentity } from './identity.js';

/** Dev principals by file base name (contract). */
const DEV_PRINCIPALS: Readonly<Record<string, PrincipalIdentity>> = Object.freeze({
  checkout: { role: 'checkout', name: 'checkout' },
  'processor-acme': { role: 'processor', name: 'acme' },
  'processor-globex': { role: 'processor', name: 'globex' },
  auditor: { role: 'auditor', name: 'auditor' },
  admin: { role: 'admin', name: 'admin' },
});
const DEFAULT_DEV_HOSTNAMES: readonly string[] = ['localhost', '127.0.0.1', '::1'];
export const DEV_PKI_README = 'README-DEV-ONLY.txt';
/** Certificates expiring sooner than this are reissued at start. */
const DEV_RENEW_BEFORE_MS = 24 * 60 * 60 * 1000;
const DIR_MODE = 0o700;
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;

const README_TEXT = `DEVELOPMENT CREDENTIALS ONLY - DO NOT USE IN PRODUCTION

Everything in this directory was generated automatically by \`npm start\` for local development:
a throw-away certificate authority ("${DEFAULT_CA_COMMON_NAME}"), a server certificate for
localhost, and one client certificate per development principal. The private keys are stored
unencrypted. Anyone holding ca-key.pem can mint any paylog identity accepted by a server that
trusts ca.pem.

Never trust ca.pem outside this machine, never copy these keys into a real deployment, and
delete this directory to start over (all files are regenerated on the next start).
`;

interface DevPkiFile {
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
  fingerprint: string;
}

interface DevPrincipal extends DevPkiFile {
  identity: PrincipalIdentity;
}

export interface DevPki {
  dir: string;
  caPath: string;
  caKeyPath: string;
  caCertPem: string;
  caKeyPem: string;
  caFingerprint: string;
  server: DevPkiFile;
  /** Keyed by file base name: checkout, processor-acme, processor-globex, auditor, admin. */
  principals: Record<string, DevPrincipal>;
  /** File base names (e.g. `ca`, `server`, `auditor`) written by this call; empty when all were reused. */
  generated: string[];
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Write via a temporary file + rename so a crash never leaves a truncated PEM behind. */
async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

function parseX509(pem: string): X509Certificate | null {
  try {
    return new X509Certificate(pem);
  } catch {
    return null;
  }
}

/** Key parses and belongs to the certificate; the certificate is valid long enough. */
function pairIsUsable(certPem: string, keyPem: string, now: number): X509Certificate | null {
  const cert = parseX509(certPem);
  if (!cert) return null;
  try {
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return null;
  } catch {
    return null;
  }
  if (new Date(cert.validTo).getTime() - now < DEV_RENEW_BEFORE_MS) return null;
  return cert;
}

function issuedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

function coversHostnames(cert: X509Certificate, hostnames: readonly string[]): boolean {
  return hostnames.every((h) =>
    isIP(h) !== 0 ? cert.checkIP(h) !== undefined : cert.checkHost(h) !== undefined,
  );
}

function sameIdentity(a: PrincipalIdentity | null, b: PrincipalIdentity): boolean {
  return a !== null && a.role === b.role && a.name === b.name;
}

interface Pair {
  certPem: string;
  keyPem: string;
}

/**
 * Reuse `<base>.pem`/`<base>-key.pem` when `accept` approves the existing pair, otherwise
 * issue a new one (key first, then certificate).
 */
async function ensurePair(
  dir: string,
  base: string,
  certFile: string,
  keyFile: string,
  accept: (cert: X509Certificate) => boolean,
  issue: () => Pair,
  generated: string[],
): Promise<DevPkiFile> {
  const certPath = join(dir, certFile);
  const keyPath = join(dir, keyFile);
  const [certPem, keyPem] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)]);
  if (certPem !== null && keyPem !== null) {
    const cert = pairIsUsable(certPem, keyPem, Date.now());
    if (cert && accept(cert)) {
      await chmod(keyPath, KEY_MODE);
      return { certPath, keyPath, certPem, keyPem, fingerprint: fingerprintOfDer(cert.raw) };
    }
  }
  const fresh = issue();
  await writeAtomic(keyPath, fresh.keyPem, KEY_MODE);
  await writeAtomic(certPath, fresh.certPem, CERT_MODE);
  generated.push(base);
  const der = new X509Certificate(fresh.certPem).raw;
  return { certPath, keyPath, certPem: fresh.certPem, keyPem: fresh.keyPem, fingerprint: fingerprintOfDer(der) };
}

/**
 * Creates (first start) or reuses (later starts) the development PKI in `pkiDir`.
 * `opts.hostnames` are added to localhost/127.0.0.1/::1 in the server certificate.
 */
export async function ensureDevPki(pkiDir: string, opts?: { hostnames?: string[] }): Promise<DevPki> {
  const hostnames = [...new Set([...DEFAULT_DEV_HOSTNAMES, ...(opts?.hostnames ?? [])])];
  await mkdir(pkiDir, { recursive: true, mode: DIR_MODE });
  await chmod(pkiDir, DIR_MODE);
  const generated: string[] = [];

  const caEntry = await ensurePair(
    pkiDir,
    'ca',
    'ca.pem',
    'ca-key.pem',
    (cert) => cert.ca,
    () => createCa(),
    generated,
  );
  const ca: CaMaterial = { certPem: caEntry.certPem, keyPem: caEntry.keyPem };
  const caCert = new X509Certificate(ca.certPem);
  const caIsNew = generated.includes('ca');
  const fromCurrentCa = (cert: X509Certificate): boolean => !caIsNew && issuedBy(cert, caCert);

  const server = await ensurePair(
    pkiDir,
    'server',
    'server.pem',
    'server-key.pem',
    (cert) => fromCurrentCa(cert) && coversHostnames(cert, hostnames),
    () => issueServerCertificate(ca, hostnames),
    generated,
  );

  const principals: Record<string, DevPrincipal> = {};
  for (const [base, identity] of Object.entries(DEV_PRINCIPALS)) {
    const entry = await ensurePair(
      pkiDir,
      base,
      `${base}.pem`,
      `${base}-key.pem`,
      (cert) => fromCurrentCa(cert) && sameIdentity(identityFromX509(cert), identity),
      () => issuePrincipalCertificate(ca, identity),
      generated,
    );
    principals[base] = { ...entry, identity: { ...identity } };
  }

  const readmePath = join(pkiDir, DEV_PKI_README);
  if ((await readIfExists(readmePath)) !== README_TEXT) {
    await writeAtomic(readmePath, README_TEXT, CERT_MODE);
  }

  return {
    dir: pkiDir,
    caPath: caEntry.certPath,
    caKeyPath: caEntry.keyPath,
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    caFingerprint: caEntry.fingerprint,
    server,
    principals,
    generated,
  };
}
