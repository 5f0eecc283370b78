import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PaylogError } from '../src/errors.js';
import {
  certificateInfo,
  createCa,
  createCsr,
  DEFAULT_CA_COMMON_NAME,
  generateRsaKeyPem,
  issuePrincipalCertificate,
  issueServerCertificate,
  signCsr,
  type CaMaterial,
} from '../src/pki/ca.js';
import { DEV_PKI_README, ensureDevPki, type DevPki } from '../src/pki/dev-pki.js';
import {
  certificateFingerprint,
  identityFromPeerCertificate,
  normalizeSerialHex,
  parsePrincipalUri,
  principalUri,
  type PrincipalIdentity,
} from '../src/pki/identity.js';

const REPO_ROOT = resolve(import.meta.dirname, '..');
const TSX_BIN = join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const ISSUE_CERT_SCRIPT = join(REPO_ROOT, 'scripts', 'issue-cert.ts');
const DAY_MS = 24 * 60 * 60 * 1000;

const PRINCIPAL_FILES: Record<string, PrincipalIdentity> = {
  checkout: { role: 'checkout', name: 'checkout' },
  'processor-acme': { role: 'processor', name: 'acme' },
  'processor-globex': { role: 'processor', name: 'globex' },
  auditor: { role: 'auditor', name: 'auditor' },
  admin: { role: 'admin', name: 'admin' },
};
const EXPECTED_DEV_FILES = [
  'README-DEV-ONLY.txt',
  'ca.pem',
  'ca-key.pem',
  'server.pem',
  'server-key.pem',
  ...Object.keys(PRINCIPAL_FILES).flatMap((n) => [`${n}.pem`, `${n}-key.pem`]),
].sort();

const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `paylog-pki-${prefix}-`));
  tempDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

function expectPaylogError(fn: () => unknown, code: string, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(PaylogError);
  expect((caught as PaylogError).code).toBe(code);
  if (message) expect((caught as PaylogError).message).toMatch(message);
}

/** forge chain verification against a store holding only `caPem`; true or the error message. */
function forgeVerify(caPem: string, certPem: string): boolean | string {
  const store = forge.pki.createCaStore([caPem]);
  try {
    return forge.pki.verifyCertificateChain(store, [forge.pki.certificateFromPem(certPem)]);
  } catch (e) {
    return (e as { message?: string }).message ?? 'failed';
  }
}

function nodeVerify(caPem: string, certPem: string): { issued: boolean; signature: boolean } {
  const ca = new X509Certificate(caPem);
  const cert = new X509Certificate(certPem);
  return { issued: cert.checkIssued(ca), signature: cert.verify(ca.publicKey) };
}

function spkiDer(key: KeyObject): Buffer {
  return (key.type === 'public' ? key : createPublicKey(key)).export({ type: 'spki', format: 'der' });
}

describe('principal identity encoding', () => {
  it('round-trips the SAN URI and rejects malformed names', () => {
    expect(principalUri({ role: 'processor', name: 'acme' })).toBe('urn:paylog:principal:processor:acme');
    expect(parsePrincipalUri('urn:paylog:principal:auditor:alice-2')).toEqual({ role: 'auditor', name: 'alice-2' });
    for (const bad of [
      'urn:paylog:principal:root:acme',
      'urn:paylog:principal:processor:Acme',
      'urn:paylog:principal:processor:-acme',
      'urn:paylog:principal:processor:acme:x',
      `urn:paylog:principal:processor:${'a'.repeat(64)}`,
      'URN:paylog:principal:processor:acme',
    ]) {
      expect(parsePrincipalUri(bad), bad).toBeNull();
    }
    expectPaylogError(() => principalUri({ role: 'processor', name: 'ACME' }), 'VALIDATION_FAILED');
    expectPaylogError(() => principalUri({ role: 'root' as never, name: 'acme' }), 'VALIDATION_FAILED');
  });

  it('normalises serial numbers to lowercase hex without leading zero bytes', () => {
    expect(normalizeSerialHex('00:AB:01')).toBe('ab01');
    expect(normalizeSerialHex('0AB')).toBe('ab');
    expect(normalizeSerialHex('0A12')).toBe('0a12');
    expectPaylogError(() => normalizeSerialHex('xyz'), 'VALIDATION_FAILED');
  });

  describe('identityFromPeerCertificate (synthetic peer certificates)', () => {
    const good = (): PeerCertificate =>
      ({
        subject: { O: 'paylog', OU: 'processor', CN: 'acme' },
        subjectaltname: 'URI:urn:paylog:principal:processor:acme',
        ext_key_usage: ['1.3.6.1.5.5.7.3.2'],
        ca: false,
        raw: Buffer.from('not really DER'),
      }) as unknown as PeerCertificate;

    it('accepts a consistent certificate', () => {
      expect(identityFromPeerCertificate(good())).toEqual({ role: 'processor', name: 'acme' });
    });

    it.each([
      ['no SAN', (c: PeerCertificate) => void delete c.subjectaltname],
      ['empty object (no client certificate)', (c: PeerCertificate) => {
        for (const k of Object.keys(c)) delete (c as unknown as Record<string, unknown>)[k];
      }],
      ['OU disagrees with SAN', (c: PeerCertificate) => void (c.subject.OU = 'auditor')],
      ['CN disagrees with SAN', (c: PeerCertificate) => void (c.subject.CN = 'globex')],
      ['O is not paylog', (c: PeerCertificate) => void (c.subject.O = 'evil')],
      ['CN multi-valued', (c: PeerCertificate) => void (c.subject.CN = ['acme', 'globex'])],
      ['two principal URIs', (c: PeerCertificate) => void (c.subjectaltname += ', URI:urn:paylog:principal:admin:admin')],
      ['malformed principal URI', (c: PeerCertificate) => void (c.subjectaltname = 'URI:urn:paylog:principal:processor:ACME')],
      ['quoted SAN smuggling', (c: PeerCertificate) => void (c.subjectaltname = 'DNS:"x, URI:urn:paylog:principal:processor:acme"')],
      ['CA certificate', (c: PeerCertificate) => void (c.ca = true)],
      ['no clientAuth EKU', (c: PeerCertificate) => void (c.ext_key_usage = ['1.3.6.1.5.5.7.3.1'])],
    ])('returns null when %s', (_label, mutate) => {
      const cert = good();
      mutate(cert);
      expect(identityFromPeerCertificate(cert)).toBeNull();
    });

    it('refuses to fingerprint a missing certificate', () => {
      expectPaylogError(() => certificateFingerprint({} as PeerCertificate), 'CLIENT_CERTIFICATE_REQUIRED');
    });
  });
});

describe('CA and issued certificates', () => {
  let ca: CaMaterial;
  beforeAll(() => {
    ca = createCa();
  });

  it('creates a self-signed CA that says it is dev-only', () => {
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    expect(x.subject).toContain('DEV-ONLY');
    expect(DEFAULT_CA_COMMON_NAME).toContain('DEV-ONLY');
    expect(x.checkIssued(x)).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
  });

  it('issues principal certificates with the documented profile', () => {
    const issued = issuePrincipalCertificate(ca, { role: 'processor', name: 'acme' });
    const x = new X509Certificate(issued.certPem);
    expect(x.subject.split('\n')).toEqual(['O=paylog', 'OU=processor', 'CN=acme']);
    expect(x.subjectAltName).toBe('URI:urn:paylog:principal:processor:acme');
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // node reports the EKU here
    expect(x.ca).toBe(false);
    expect(x.checkPrivateKey(createPrivateKey(issued.keyPem))).toBe(true);
    expect(x.serialNumber.toLowerCase()).toBe(issued.serialHex);
    expect(issued.fingerprint).toBe(`sha256:${x.fingerprint256.replace(/:/g, '').toLowerCase()}`);
    const days = (new Date(x.validTo).getTime() - Date.now()) / DAY_MS;
    expect(days).toBeGreaterThan(396);
    expect(days).toBeLessThanOrEqual(397);

    const text = forge.pki.certificateFromPem(issued.certPem);
    expect(text.siginfo.algorithmOid).toBe(forge.pki.oids.sha256WithRSAEncryption);
    const ku = text.getExtension('keyUsage') as { digitalSignature?: boolean; keyEncipherment?: boolean; keyCertSign?: boolean };
    expect(ku).toMatchObject({ digitalSignature: true, keyEncipherment: true, keyCertSign: false });
    expect(certificateInfo(issued.certPem)).toMatchObject({
      serialHex: issued.serialHex,
      fingerprint: issued.fingerprint,
      identity: { role: 'processor', name: 'acme' },
    });
  });

  it('uses distinct positive 128-bit random serials', () => {
    const serials = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const c = issuePrincipalCertificate(ca, { role: 'auditor', name: `a${i}` });
      const serial = forge.pki.certificateFromPem(c.certPem).serialNumber; // DER content hex
      expect(Number.parseInt(serial.slice(0, 2), 16) & 0x80).toBe(0); // positive
      expect(c.serialHex.length).toBeLessThanOrEqual(32);
      expect(c.serialHex.length).toBeGreaterThan(16);
      serials.add(c.serialHex);
    }
    expect(serials.size).toBe(4);
  });

  it('honours validityDays and never outlives the CA', () => {
    const short = issuePrincipalCertificate(ca, { role: 'admin', name: 'admin' }, { validityDays: 7 });
    const days = (certificateInfo(short.certPem).notAfter.getTime() - Date.now()) / DAY_MS;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThanOrEqual(7);

    const shortCa = createCa({ validityDays: 10 });
    const leaf = issuePrincipalCertificate(shortCa, { role: 'admin', name: 'admin' });
    expect(certificateInfo(leaf.certPem).notAfter.getTime()).toBe(
      new Date(new X509Certificate(shortCa.certPem).validTo).getTime(),
    );
    expectPaylogError(() => issuePrincipalCertificate(ca, { role: 'admin', name: 'admin' }, { validityDays: 0 }), 'VALIDATION_FAILED');
  });

  it('issues server certificates with DNS and IP SANs', () => {
    const s = issueServerCertificate(ca, ['localhost', '127.0.0.1', '::1', 'paylog.internal']);
    const x = new X509Certificate(s.certPem);
    expect(x.checkHost('localhost')).toBe('localhost');
    expect(x.checkHost('paylog.internal')).toBe('paylog.internal');
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x.checkIP('::1')).toBeDefined();
    expect(x.checkIP('10.0.0.1')).toBeUndefined();
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(certificateInfo(s.certPem).identity).toBeNull();
    expectPaylogError(() => issueServerCertificate(ca, ['bad host!']), 'VALIDATION_FAILED');
  });
});

describe('CSR flow', () => {
  let ca: CaMaterial;
  beforeAll(() => {
    ca = createCa();
  });
  const initech: PrincipalIdentity = { role: 'processor', name: 'initech' };

  it('signs a CSR for the operator-given identity over the CSR key', () => {
    const { csrPem, keyPem } = createCsr(initech);
    const issued = signCsr(ca, csrPem, initech, { validityDays: 30 });
    const x = new X509Certificate(issued.certPem);
    expect(certificateInfo(issued.certPem).identity).toEqual(initech);
    expect(spkiDer(x.publicKey).equals(spkiDer(createPrivateKey(keyPem)))).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(nodeVerify(ca.certPem, issued.certPem)).toEqual({ issued: true, signature: true });
    expect(forgeVerify(ca.certPem, issued.certPem)).toBe(true);
    expect(issued.serialHex).toBe(x.serialNumber.toLowerCase());
  });

  it('reuses a caller-supplied key', () => {
    const keyPem = generateRsaKeyPem();
    const csr = createCsr(initech, keyPem);
    expect(csr.keyPem).toBe(keyPem);
    const issued = signCsr(ca, csr.csrPem, initech);
    expect(spkiDer(new X509Certificate(issued.certPem).publicKey).equals(spkiDer(createPrivateKey(keyPem)))).toBe(true);
  });

  it('refuses a CSR whose subject claims another name or role', () => {
    const { csrPem } = createCsr({ role: 'processor', name: 'acme' });
    expectPaylogError(() => signCsr(ca, csrPem, initech), 'VALIDATION_FAILED', /CN/);
    expectPaylogError(() => signCsr(ca, csrPem, { role: 'admin', name: 'acme' }), 'VALIDATION_FAILED', /OU/);
    const adminCsr = createCsr({ role: 'admin', name: 'initech' }).csrPem;
    expectPaylogError(() => signCsr(ca, adminCsr, initech), 'VALIDATION_FAILED', /OU/);
  });

  it('refuses a CSR whose requested SAN names another principal', () => {
    const key = forge.pki.privateKeyFromPem(generateRsaKeyPem()) as forge.pki.rsa.PrivateKey;
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
    csr.setSubject([{ shortName: 'CN', value: 'initech' }]);
    csr.setAttributes([
      {
        name: 'extensionRequest',
        extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: 'urn:paylog:principal:admin:admin' }] }],
      },
    ]);
    csr.sign(key, forge.md.sha256.create());
    expectPaylogError(() => signCsr(ca, forge.pki.certificationRequestToPem(csr), initech), 'VALIDATION_FAILED', /subjectAltName/);
  });

  it('accepts a CSR with only a matching CN (identity still from the operator)', () => {
    const key = forge.pki.privateKeyFromPem(generateRsaKeyPem()) as forge.pki.rsa.PrivateKey;
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
    csr.setSubject([{ shortName: 'CN', value: 'initech' }]);
    csr.sign(key, forge.md.sha256.create());
    const issued = signCsr(ca, forge.pki.certificationRequestToPem(csr), initech);
    expect(new X509Certificate(issued.certPem).subject.split('\n')).toEqual(['O=paylog', 'OU=processor', 'CN=initech']);
  });

  it('refuses a tampered CSR (signature mismatch)', () => {
    const { csrPem } = createCsr(initech);
    const der = Buffer.from(forge.asn1.toDer(forge.pki.certificationRequestToAsn1(forge.pki.certificationRequestFromPem(csrPem))).getBytes(), 'binary');
    const at = der.indexOf(Buffer.from('initech'));
    expect(at).toBeGreaterThan(0);
    const tampered = Buffer.from(der);
    tampered.write('initecx', at, 'latin1'); // same length: structure intact, signature now wrong
    const pem = forge.pki.certificationRequestToPem(forge.pki.certificationRequestFromAsn1(forge.asn1.fromDer(tampered.toString('binary'))));
    expectPaylogError(() => signCsr(ca, pem, { role: 'processor', name: 'initecx' }), 'BAD_REQUEST', /signature/);

    const flipped = Buffer.from(der);
    flipped[flipped.length - 1]! ^= 0x01; // last signature byte
    const pem2 = forge.pki.certificationRequestToPem(forge.pki.certificationRequestFromAsn1(forge.asn1.fromDer(flipped.toString('binary'))));
    expectPaylogError(() => signCsr(ca, pem2, initech), 'BAD_REQUEST', /signature/);
  });

  it('refuses SHA-1 signed and malformed CSRs', () => {
    const key = forge.pki.privateKeyFromPem(generateRsaKeyPem()) as forge.pki.rsa.PrivateKey;
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
    csr.setSubject([{ shortName: 'CN', value: 'initech' }]);
    csr.sign(key, forge.md.sha1.create());
    expectPaylogError(() => signCsr(ca, forge.pki.certificationRequestToPem(csr), initech), 'BAD_REQUEST', /SHA-256/);
    expectPaylogError(() => signCsr(ca, 'not a csr', initech), 'BAD_REQUEST');
    expectPaylogError(() => signCsr(ca, createCsr(initech).csrPem, { role: 'processor', name: 'Initech' }), 'VALIDATION_FAILED');
  });

  it('refuses to sign with a CA key that does not belong to the CA certificate', () => {
    const other = createCa();
    const { csrPem } = createCsr(initech);
    expectPaylogError(() => signCsr({ certPem: ca.certPem, keyPem: other.keyPem }, csrPem, initech), 'INTERNAL');
  });
});

describe('dev PKI', () => {
  let dir: string;
  let first: DevPki;
  beforeAll(async () => {
    dir = join(tempDir('dev'), 'pki');
    first = await ensureDevPki(dir);
  });

  it('writes exactly the contract file names with private modes', async () => {
    expect((await readdir(dir)).sort()).toEqual(EXPECTED_DEV_FILES);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    for (const f of EXPECTED_DEV_FILES.filter((n) => n.endsWith('-key.pem'))) {
      expect((await stat(join(dir, f))).mode & 0o777, f).toBe(0o600);
    }
    expect(await readFile(join(dir, DEV_PKI_README), 'utf8')).toMatch(/development credentials/i);
    expect(first.caPath).toBe(join(dir, 'ca.pem'));
    expect(first.server).toMatchObject({ certPath: join(dir, 'server.pem'), keyPath: join(dir, 'server-key.pem') });
    expect(Object.keys(first.principals).sort()).toEqual(Object.keys(PRINCIPAL_FILES).sort());
    for (const [base, identity] of Object.entries(PRINCIPAL_FILES)) {
      const p = first.principals[base]!;
      expect(p).toMatchObject({ certPath: join(dir, `${base}.pem`), keyPath: join(dir, `${base}-key.pem`), identity });
      expect(await readFile(p.certPath, 'utf8')).toBe(p.certPem);
      expect(certificateInfo(p.certPem).identity).toEqual(identity);
    }
    expect(first.generated).toHaveLength(7);
  });

  it('principal and server certificates verify against the CA (forge caStore and node:crypto)', () => {
    for (const entry of [first.server, ...Object.values(first.principals)]) {
      expect(forgeVerify(first.caCertPem, entry.certPem), entry.certPath).toBe(true);
      expect(nodeVerify(first.caCertPem, entry.certPem), entry.certPath).toEqual({ issued: true, signature: true });
    }
  });

  it('certificates from another CA (even with the same CA name) do not verify', () => {
    const foreign = createCa();
    const cert = issuePrincipalCertificate(foreign, { role: 'admin', name: 'admin' });
    expect(forgeVerify(first.caCertPem, cert.certPem)).not.toBe(true);
    expect(nodeVerify(first.caCertPem, cert.certPem)).toEqual({ issued: false, signature: false });
  });

  it('reuses existing files on a later start', async () => {
    const before = await Promise.all(EXPECTED_DEV_FILES.map((f) => readFile(join(dir, f), 'utf8')));
    const again = await ensureDevPki(dir);
    expect(again.generated).toEqual([]);
    expect(again.caFingerprint).toBe(first.caFingerprint);
    expect(again.principals['auditor']!.fingerprint).toBe(first.principals['auditor']!.fingerprint);
    const after = await Promise.all(EXPECTED_DEV_FILES.map((f) => readFile(join(dir, f), 'utf8')));
    expect(after).toEqual(before);
  });

  it('regenerates only what is missing, and everything when the CA is missing', async () => {
    const d = join(tempDir('regen'), 'pki');
    const orig = await ensureDevPki(d);
    await rm(join(d, 'processor-globex-key.pem'));
    const partial = await ensureDevPki(d);
    expect(partial.generated).toEqual(['processor-globex']);
    expect(partial.caFingerprint).toBe(orig.caFingerprint);
    expect(partial.principals['processor-globex']!.fingerprint).not.toBe(orig.principals['processor-globex']!.fingerprint);
    expect(partial.principals['processor-acme']!.fingerprint).toBe(orig.principals['processor-acme']!.fingerprint);
    expect((await stat(join(d, 'processor-globex-key.pem'))).mode & 0o777).toBe(0o600);

    const wider = await ensureDevPki(d, { hostnames: ['paylog.test'] });
    expect(wider.generated).toEqual(['server']);
    expect(new X509Certificate(wider.server.certPem).checkHost('paylog.test')).toBe('paylog.test');

    await rm(join(d, 'ca.pem'));
    const fresh = await ensureDevPki(d);
    expect(fresh.caFingerprint).not.toBe(orig.caFingerprint);
    expect(fresh.generated.sort()).toEqual(['admin', 'auditor', 'ca', 'checkout', 'processor-acme', 'processor-globex', 'server']);
    for (const p of Object.values(fresh.principals)) {
      expect(nodeVerify(fresh.caCertPem, p.certPem)).toEqual({ issued: true, signature: true });
    }
  });

  describe('identity over a real mTLS handshake', () => {
    interface Seen {
      authorized: boolean;
      identity: PrincipalIdentity | null;
      fingerprint: string | null;
    }
    let server: https.Server;
    let port: number;

    beforeAll(async () => {
      server = https.createServer(
        { cert: first.server.certPem, key: first.server.keyPem, ca: first.caCertPem, requestCert: true, rejectUnauthorized: false },
        (req, res) => {
          const socket = req.socket as TLSSocket;
          const peer = socket.getPeerCertificate();
          const present = Object.keys(peer).length > 0;
          const seen: Seen = {
            authorized: socket.authorized,
            identity: present ? identityFromPeerCertificate(peer) : null,
            fingerprint: present ? certificateFingerprint(peer) : null,
          };
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify(seen));
        },
      );
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      port = (server.address() as AddressInfo).port;
    });
    afterAll(async () => {
      await new Promise<void>((r) => server.close(() => r()));
    });

    function call(client: { certPem?: string; keyPem?: string }): Promise<Seen> {
      return new Promise((res, rej) => {
        const req = https.get(
          { host: '127.0.0.1', port, path: '/', ca: first.caCertPem, cert: client.certPem, key: client.keyPem, agent: false },
          (r) => {
            let body = '';
            r.setEncoding('utf8');
            r.on('data', (c: string) => (body += c));
            r.on('end', () => res(JSON.parse(body) as Seen));
          },
        );
        req.on('error', rej);
      });
    }

    it.each(Object.entries(PRINCIPAL_FILES))('reads %s from getPeerCertificate()', async (base, identity) => {
      const p = first.principals[base]!;
      const seen = await call(p);
      expect(seen.authorized).toBe(true);
      expect(seen.identity).toEqual(identity);
      expect(seen.fingerprint).toBe(p.fingerprint);
      expect(seen.fingerprint).toBe(certificateInfo(p.certPem).fingerprint);
    });

    it('reads a CSR-signed processor certificate', async () => {
      const initech: PrincipalIdentity = { role: 'processor', name: 'initech' };
      const { csrPem, keyPem } = createCsr(initech);
      const issued = signCsr({ certPem: first.caCertPem, keyPem: first.caKeyPem }, csrPem, initech);
      const seen = await call({ certPem: issued.certPem, keyPem });
      expect(seen).toEqual({ authorized: true, identity: initech, fingerprint: issued.fingerprint });
    });

    it('a certificate from a different CA is not authorized', async () => {
      const foreign = issuePrincipalCertificate(createCa(), { role: 'admin', name: 'admin' });
      const seen = await call(foreign);
      expect(seen.authorized).toBe(false);
      expect(seen.fingerprint).toBe(foreign.fingerprint);
    });

    it('no client certificate: not authorized, no identity', async () => {
      const seen = await call({});
      expect(seen).toEqual({ authorized: false, identity: null, fingerprint: null });
    });
  });
});

describe('scripts/issue-cert.ts', () => {
  interface Run {
    code: number;
    stdout: string;
    stderr: string;
  }
  function run(cwd: string, args: string[]): Promise<Run> {
    return new Promise((res) => {
      execFile(TSX_BIN, [ISSUE_CERT_SCRIPT, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        res({ code, stdout, stderr });
      });
    });
  }

  let work: string;
  let dev: DevPki;
  beforeAll(async () => {
    work = tempDir('script');
    dev = await ensureDevPki(join(work, 'pki'));
  });

  it('csr then sign works end-to-end', async () => {
    const csr = await run(work, ['csr', '--name', 'initech', '--role', 'processor', '--key-out', 'k.pem', '--csr-out', 'r.csr']);
    expect(csr.code, csr.stderr).toBe(0);
    expect((await stat(join(work, 'k.pem'))).mode & 0o777).toBe(0o600);
    const keyPem = await readFile(join(work, 'k.pem'), 'utf8');
    const csrPem = await readFile(join(work, 'r.csr'), 'utf8');
    expect(forge.pki.certificationRequestFromPem(csrPem).verify()).toBe(true);

    const sign = await run(work, ['sign', '--csr', 'r.csr', '--role', 'processor', '--name', 'initech', '--ca-dir', 'pki', '--out', 'cert.pem', '--days', '30']);
    expect(sign.code, sign.stderr).toBe(0);
    const certPem = await readFile(join(work, 'cert.pem'), 'utf8');
    const info = certificateInfo(certPem);
    expect(info.identity).toEqual({ role: 'processor', name: 'initech' });
    expect(sign.stdout).toContain(info.serialHex);
    expect(sign.stdout).toContain(info.fingerprint);
    expect(sign.stdout).toMatch(/next step/i);
    expect((info.notAfter.getTime() - Date.now()) / DAY_MS).toBeLessThanOrEqual(30);
    expect(nodeVerify(dev.caCertPem, certPem)).toEqual({ issued: true, signature: true });
    expect(new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
  });

  it('sign refuses a CSR for another identity (exit 1, no stack trace, no output file)', async () => {
    const { csrPem } = createCsr({ role: 'processor', name: 'acme' });
    await writeFile(join(work, 'acme.csr'), csrPem);
    const r = await run(work, ['sign', '--csr', 'acme.csr', '--role', 'processor', '--name', 'hooli', '--ca-dir', 'pki', '--out', 'hooli.pem']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not match/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    await expect(stat(join(work, 'hooli.pem'))).rejects.toThrow();
  });

  it.each([
    ['no command', []],
    ['unknown command', ['frobnicate']],
    ['missing --out', ['sign', '--csr', 'r.csr', '--role', 'processor', '--name', 'initech', '--ca-dir', 'pki']],
    ['bad role', ['sign', '--csr', 'r.csr', '--role', 'root', '--name', 'initech', '--ca-dir', 'pki', '--out', 'x.pem']],
    ['bad name', ['csr', '--name', 'Not_Valid', '--key-out', 'x-key.pem', '--csr-out', 'x.csr']],
    ['bad --days', ['sign', '--csr', 'r.csr', '--role', 'processor', '--name', 'initech', '--ca-dir', 'pki', '--out', 'x.pem', '--days', 'ten']],
    ['missing CSR file', ['sign', '--csr', 'nope.csr', '--role', 'processor', '--name', 'initech', '--ca-dir', 'pki', '--out', 'x.pem']],
  ])('usage error (%s) exits 2 with a message and no stack trace', async (_label, args) => {
    const r = await run(work, args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().length).toBeGreaterThan(0);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    await expect(stat(join(work, 'x.pem'))).rejects.toThrow();
  });
});
