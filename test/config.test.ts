/** Settings are validated at start with messages that name the bad setting. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, DEFAULT_PORT } from '../src/config.js';

describe('loadConfig', () => {
  it('defaults: embedded PostgreSQL, local KMS, dev PKI, 127.0.0.1:8443', () => {
    const c = loadConfig({});
    expect(c.port).toBe(DEFAULT_PORT);
    expect(c.host).toBe('127.0.0.1');
    expect(c.databaseUrl).toBeUndefined();
    expect(c.kms.mode).toBe('local');
    expect(c.tls).toBeUndefined();
    expect(c.dataDir.endsWith('/data')).toBe(true);
  });

  it('AWS settings switch to real KMS with the given keys', () => {
    const c = loadConfig({ AWS_REGION: 'eu-west-1', PAYLOG_KMS_DATA_KEY_ID: 'arn:aws:kms:eu-west-1:1:key/abc', PAYLOG_KMS_ADDITIONAL_SIGNING_KEY_IDS: 'alias/a,alias/b' });
    expect(c.kms).toMatchObject({ mode: 'aws', region: 'eu-west-1', dataKeyId: 'arn:aws:kms:eu-west-1:1:key/abc', additionalSigningKeyIds: ['alias/a', 'alias/b'] });
  });

  it.each([
    [{ PAYLOG_PORT: 'eighty' }, 'PAYLOG_PORT'],
    [{ PAYLOG_PORT: '70000' }, 'PAYLOG_PORT'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ AWS_ENDPOINT_URL_KMS: 'not a url' }, 'AWS_ENDPOINT_URL_KMS'],
    [{ PAYLOG_LOG_LEVEL: 'loud' }, 'PAYLOG_LOG_LEVEL'],
    [{ PAYLOG_LOG_ORIGIN: 'has space' }, 'PAYLOG_LOG_ORIGIN'],
    [{ PAYLOG_TLS_CERT: '/x.pem' }, 'PAYLOG_TLS_KEY'],
    [{ PAYLOG_KMS_DATA_KEY_ID: 'alias/x' }, 'PAYLOG_KMS_DATA_KEY_ID'],
    [{ PAYLOG_TLS_CERT: '/c', PAYLOG_TLS_KEY: '/k', PAYLOG_TLS_CA: '/a' }, 'AWS_REGION'],
  ])('%o is refused naming %s', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(name);
  });

  it('production TLS with the local KMS only when explicitly allowed', () => {
    const c = loadConfig({ PAYLOG_TLS_CERT: '/c', PAYLOG_TLS_KEY: '/k', PAYLOG_TLS_CA: '/a', PAYLOG_ALLOW_DEV_KMS: '1' });
    expect(c.kms.mode).toBe('local');
    expect(c.tls).toEqual({ certPath: '/c', keyPath: '/k', caPath: '/a' });
  });

  it('a bad DATABASE_URL password is not echoed', () => {
    try {
      loadConfig({ DATABASE_URL: 'mysql://u:s3cretpw@h/db' });
      expect.unreachable();
    } catch (e) {
      expect(String((e as Error).message)).not.toContain('s3cretpw');
    }
  });
});
