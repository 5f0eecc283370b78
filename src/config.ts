/**
 * Settings, read once from the environment and validated at start with clear messages.
 * Names are part of the external contract (../shared/contract.md "Running it").
 */
import { join, resolve } from 'node:path';
import { SIGNER_STATE_RELATIVE_PATH } from './log/signer-state.js';
import { z } from 'zod';
import { parseWitnessList, type WitnessEndpoint } from './log/witness/endpoints.js';

const DEFAULT_DATA_DIR = './data';
const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8443;
const DEFAULT_LOG_ORIGIN = 'dev.paylog.invalid/log';
const DEFAULT_DATA_KEY_ALIAS = 'alias/paylog-data';
const DEFAULT_SIGNING_KEY_ALIAS = 'alias/paylog-checkpoint';
const DEFAULT_LOCAL_KMS_REGION = 'us-east-1';
/** Region of the AWS KMS client when only AWS_ENDPOINT_URL_KMS is set (documented in docs/operations.md). */
export const DEFAULT_AWS_REGION = 'us-east-1';
const DEFAULT_RELEASE_RATE_PER_MINUTE = 120;
export const DEFAULT_BODY_LIMIT_BYTES = 16 * 1024;
/** Key hierarchy (issue 9). */
const DEFAULT_KEY_MODE = 'hierarchical';
const DEFAULT_KEY_EPOCH = 'month';
const DEFAULT_EPOCH_KEY_CACHE_TTL_S = 300;
/** Releases one unwrapped epoch private key may serve before it is evicted and unwrapped again. */
const DEFAULT_EPOCH_KEY_CACHE_MAX_USES = 10_000;
/**
 * The probe limit (issue 17, src/services/probe-limit.ts): new transactions per principal ×
 * served payment fields (brand + last four + expiry, or the bank equivalents) × clock hour.
 */
export const DEFAULT_PROBE_LIMIT_PER_HOUR = 20;
/** ISO 8601 duration: card data older than this (by key period end) is crypto-shredded. */
const DEFAULT_RETENTION = 'P13M';
/** Client-side encryption (src/cse): JWE maximum age on paylog's clock, from its `iat`. */
const DEFAULT_CSE_MAX_AGE_S = 15 * 60;
/** Client-side encryption: one browser key per calendar period (UTC). */
const DEFAULT_CSE_KEY_PERIOD = 'month';
/** Client-side encryption: a retired browser key keeps decrypting this long after its period. */
const DEFAULT_CSE_KEY_OVERLAP_S = 24 * 60 * 60;
/** Client-side encryption: unwrapped private keys are kept in memory this long. */
const DEFAULT_CSE_KEY_CACHE_TTL_S = 300;
/** ISO 8601 duration: a card security code not used by then is destroyed (issue 18; src/cvc/). */
const DEFAULT_CVC_TTL = 'PT1H';
/** PAYLOG_CVC_TTL bounds: at least a second, at most a day (PCI DSS 3.3.1: only until authorization). */
const CVC_TTL_MIN_MS = 1_000;
const CVC_TTL_MAX_MS = 24 * 60 * 60 * 1000;
const FIXED_DURATION = /^P(?!$)(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

/** Milliseconds of an ISO 8601 duration of fixed length (weeks, days, hours, minutes, seconds), or null. */
function fixedDurationMs(s: string): number | null {
  const m = FIXED_DURATION.exec(s);
  if (!m) return null;
  const n = (i: number) => Number(m[i] ?? 0);
  return ((((n(1) * 7 + n(2)) * 24 + n(3)) * 60 + n(4)) * 60 + n(5)) * 1000;
}

/**
 * Time budgets (milliseconds). Every wait is bounded: a database or KMS that is down, refuses
 * or stalls turns into a 503 with Retry-After within these limits, never a hang.
 */
export const TIME_BUDGET_DEFAULTS = {
  /** Opening a database connection (or waiting for a free pooled one). */
  dbConnectTimeoutMs: 2_000,
  /** One SQL statement (server `statement_timeout`; the client gives up 1 s later). */
  dbStatementTimeoutMs: 5_000,
  /** Waiting for a lock, including the append advisory lock (server `lock_timeout`). */
  dbLockTimeoutMs: 2_000,
  /** A transaction left idle is ended by the server (`idle_in_transaction_session_timeout`). */
  dbIdleInTransactionTimeoutMs: 10_000,
  /** Opening a connection to KMS. */
  kmsConnectTimeoutMs: 1_000,
  /** One KMS request once connected (no answer within it: attempt failed). */
  kmsRequestTimeoutMs: 2_000,
  /** KMS attempts per operation (1 = no retry), with the SDK's backoff between them. */
  kmsMaxAttempts: 2,
  /** Whole HTTP request: after it, the answer is 503 with Retry-After. */
  requestTimeoutMs: 5_000,
} as const;
export type TimeBudgets = { -readonly [K in keyof typeof TIME_BUDGET_DEFAULTS]: number };

const intFromEnv = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const envSchema = z.object({
  PAYLOG_DATA_DIR: z.string().min(1).default(DEFAULT_DATA_DIR),
  /**
   * The signer's memory of the last checkpoint it signed (src/log/signer-state.ts); default
   * `<PAYLOG_DATA_DIR>/signer/last-checkpoint`. Put it on storage the database's administrators
   * cannot roll back (SECURITY.md "Never a signed fork").
   */
  PAYLOG_SIGNER_STATE: z.string().min(1).optional(),
  PAYLOG_HOST: z.string().min(1).default(DEFAULT_HOST),
  PAYLOG_PORT: intFromEnv(0, 65535).default(DEFAULT_PORT),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
  PAYLOG_APP_DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
  AWS_ENDPOINT_URL_KMS: z.string().url().optional(),
  AWS_REGION: z.string().min(1).optional(),
  PAYLOG_KMS_DATA_KEY_ID: z.string().min(1).optional(),
  PAYLOG_KMS_SIGNING_KEY_ID: z.string().min(1).optional(),
  /** Comma-separated extra checkpoint signing keys (rotation overlap: all keys sign). */
  PAYLOG_KMS_ADDITIONAL_SIGNING_KEY_IDS: z.string().regex(/^[^,\s]+(,[^,\s]+)*$/, 'comma-separated key ids').optional(),
  PAYLOG_LOG_ORIGIN: z
    .string()
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
    .default(DEFAULT_LOG_ORIGIN),
  PAYLOG_BATCH_MAX: intFromEnv(1, 4096).default(256),
  PAYLOG_BATCH_LINGER_MS: intFromEnv(0, 100).default(0),
  PAYLOG_RELEASE_RATE_PER_MINUTE: intFromEnv(1, 1_000_000).default(DEFAULT_RELEASE_RATE_PER_MINUTE),
  PAYLOG_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PAYLOG_TLS_CERT: z.string().optional(),
  PAYLOG_TLS_KEY: z.string().optional(),
  PAYLOG_TLS_CA: z.string().optional(),
  PAYLOG_DB_CONNECT_TIMEOUT_MS: intFromEnv(100, 600_000).default(TIME_BUDGET_DEFAULTS.dbConnectTimeoutMs),
  PAYLOG_DB_STATEMENT_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(TIME_BUDGET_DEFAULTS.dbStatementTimeoutMs),
  PAYLOG_DB_LOCK_TIMEOUT_MS: intFromEnv(10, 600_000).default(TIME_BUDGET_DEFAULTS.dbLockTimeoutMs),
  PAYLOG_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(TIME_BUDGET_DEFAULTS.dbIdleInTransactionTimeoutMs),
  PAYLOG_KMS_CONNECT_TIMEOUT_MS: intFromEnv(50, 600_000).default(TIME_BUDGET_DEFAULTS.kmsConnectTimeoutMs),
  PAYLOG_KMS_REQUEST_TIMEOUT_MS: intFromEnv(50, 600_000).default(TIME_BUDGET_DEFAULTS.kmsRequestTimeoutMs),
  PAYLOG_KMS_MAX_ATTEMPTS: intFromEnv(1, 10).default(TIME_BUDGET_DEFAULTS.kmsMaxAttempts),
  PAYLOG_REQUEST_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(TIME_BUDGET_DEFAULTS.requestTimeoutMs),
  /** Explicitly allow the dev-only local KMS together with production TLS files. */
  PAYLOG_ALLOW_DEV_KMS: z.enum(['0', '1']).optional(),
  PAYLOG_KEY_MODE: z.enum(['hierarchical', 'per-transaction']).default(DEFAULT_KEY_MODE),
  PAYLOG_KEY_EPOCH: z.enum(['month', 'day', 'hour']).default(DEFAULT_KEY_EPOCH),
  PAYLOG_EPOCH_KEY_CACHE_TTL_S: intFromEnv(1, 86_400).default(DEFAULT_EPOCH_KEY_CACHE_TTL_S),
  PAYLOG_EPOCH_KEY_CACHE_MAX_USES: intFromEnv(1, 100_000_000).default(DEFAULT_EPOCH_KEY_CACHE_MAX_USES),
  PAYLOG_PROBE_LIMIT_PER_HOUR: intFromEnv(1, 100_000_000).default(DEFAULT_PROBE_LIMIT_PER_HOUR),
  PAYLOG_RETENTION: z
    .string()
    .regex(/^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$/, 'must be an ISO 8601 duration such as P13M, P400D or PT2H')
    .default(DEFAULT_RETENTION),
  /** Worker processes sharing the port (node:cluster); unset → the number of cores. */
  PAYLOG_WORKERS: intFromEnv(1, 256).optional(),
  PAYLOG_CLUSTER_APPENDS: z.enum(['workers', 'primary']).default('workers'),
  /** Comma-separated `<witness URL prefix> <witness vkey>` pairs (C2SP tlog-witness). */
  PAYLOG_WITNESSES: z.string().min(1).optional(),
  /** Cosignatures a checkpoint needs before it is served (default: every configured witness). */
  PAYLOG_WITNESS_QUORUM: intFromEnv(1, 1000).optional(),
  /** PEM file: the CA certificate(s) trusted for https witness URLs, instead of Node's built-in roots. */
  PAYLOG_WITNESS_CA: z.string().min(1).optional(),
  PAYLOG_CSE_MAX_AGE_S: intFromEnv(60, 86_400).default(DEFAULT_CSE_MAX_AGE_S),
  PAYLOG_CSE_KEY_PERIOD: z.enum(['month', 'day', 'hour']).default(DEFAULT_CSE_KEY_PERIOD),
  PAYLOG_CSE_KEY_OVERLAP_S: intFromEnv(60, 90 * 86_400).default(DEFAULT_CSE_KEY_OVERLAP_S),
  PAYLOG_CSE_KEY_CACHE_TTL_S: intFromEnv(1, 86_400).default(DEFAULT_CSE_KEY_CACHE_TTL_S),
  PAYLOG_CVC_TTL: z
    .string()
    .default(DEFAULT_CVC_TTL)
    .refine((s) => {
      const ms = fixedDurationMs(s);
      return ms !== null && ms >= CVC_TTL_MIN_MS && ms <= CVC_TTL_MAX_MS;
    }, 'must be an ISO 8601 duration from PT1S to P1D such as PT1H or PT15M'),
});

export interface Config {
  dataDir: string;
  /** Signer state file (PAYLOG_SIGNER_STATE; default under dataDir). */
  signerStatePath: string;
  host: string;
  port: number;
  /** Owner URL (migrations); undefined → embedded PostgreSQL under dataDir/pg. */
  databaseUrl?: string;
  /** Optional URL that logs in as a member of paylog_app directly. */
  appDatabaseUrl?: string;
  kms:
    | { mode: 'local'; region: string; dataKeyId: string; signingKeyId: string; additionalSigningKeyIds: string[] }
    | { mode: 'aws'; region?: string; endpoint?: string; dataKeyId: string; signingKeyId: string; additionalSigningKeyIds: string[] };
  logOrigin: string;
  batchMax: number;
  batchLingerMs: number;
  releaseRatePerMinute: number;
  /** PAYLOG_PROBE_LIMIT_PER_HOUR (issue 17). */
  probeLimitPerHour: number;
  logLevel: z.infer<typeof envSchema>['PAYLOG_LOG_LEVEL'];
  /** Time budgets (PAYLOG_DB_*_TIMEOUT_MS, PAYLOG_KMS_*, PAYLOG_REQUEST_TIMEOUT_MS). */
  budgets: TimeBudgets;
  /** Production TLS files; unset → the dev PKI under dataDir/pki. */
  tls?: { certPath: string; keyPath: string; caPath: string };
  /** Key hierarchy: hierarchical (envelope v2, epoch keys) or per-transaction (envelope v1, one KMS call per record). */
  keys: {
    mode: 'hierarchical' | 'per-transaction';
    epoch: 'month' | 'day' | 'hour';
    cacheTtlSeconds: number;
    cacheMaxUses: number;
    retention: string;
  };
  /** node:cluster worker count (src/main.ts); undefined → number of cores. */
  workers?: number;
  /**
   * With several workers, who batches the log entries: each worker its own ('workers', the
   * default), or one integrator in the cluster primary fed by every worker ('primary',
   * src/cluster/integrator.ts).
   */
  clusterAppends: 'workers' | 'primary';
  /** Witnesses (PAYLOG_WITNESSES) and the quorum; absent → checkpoints are served unwitnessed. */
  witnesses?: { endpoints: WitnessEndpoint[]; quorum: number; caPath?: string };
  /** Client-side encryption (browser JWE): see src/cse/keys.ts and SECURITY.md. */
  cse: { maxAgeS: number; keyPeriod: 'month' | 'day' | 'hour'; keyOverlapS: number; keyCacheTtlS: number };
  /** PAYLOG_CVC_TTL in milliseconds: how long a card security code is held unused (src/cvc/). */
  cvcTtlMs: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses settings; throws ConfigError listing every bad setting by name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid settings:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const additionalSigningKeyIds = e.PAYLOG_KMS_ADDITIONAL_SIGNING_KEY_IDS?.split(',') ?? [];
  const awsMode = e.AWS_ENDPOINT_URL_KMS !== undefined || e.AWS_REGION !== undefined;
  const tlsSet = [e.PAYLOG_TLS_CERT, e.PAYLOG_TLS_KEY, e.PAYLOG_TLS_CA].filter((x) => x !== undefined).length;
  if (tlsSet !== 0 && tlsSet !== 3) {
    throw new ConfigError('invalid settings:\n  PAYLOG_TLS_CERT, PAYLOG_TLS_KEY and PAYLOG_TLS_CA must be set together');
  }
  if (!awsMode) {
    const ignored = ['PAYLOG_KMS_DATA_KEY_ID', 'PAYLOG_KMS_SIGNING_KEY_ID'].filter((k) => e[k as keyof typeof e] !== undefined);
    if (ignored.length > 0) {
      throw new ConfigError(`invalid settings:\n  ${ignored.join(', ')}: only used with AWS KMS (set AWS_REGION or AWS_ENDPOINT_URL_KMS)`);
    }
    if (tlsSet === 3 && e.PAYLOG_ALLOW_DEV_KMS !== '1') {
      throw new ConfigError(
        'invalid settings:\n  AWS_REGION: production TLS files are set but no AWS KMS; the local KMS keeps keys in the clear (dev only). Set AWS_REGION / AWS_ENDPOINT_URL_KMS, or PAYLOG_ALLOW_DEV_KMS=1 for a test deployment',
      );
    }
  }
  let witnesses: Config['witnesses'];
  if (e.PAYLOG_WITNESSES !== undefined) {
    let endpoints: WitnessEndpoint[];
    try {
      endpoints = parseWitnessList(e.PAYLOG_WITNESSES);
    } catch (err) {
      throw new ConfigError(`invalid settings:\n  PAYLOG_WITNESSES: ${(err as Error).message}`);
    }
    const quorum = e.PAYLOG_WITNESS_QUORUM ?? endpoints.length;
    if (quorum > endpoints.length) {
      throw new ConfigError(`invalid settings:\n  PAYLOG_WITNESS_QUORUM: ${quorum} is more than the ${endpoints.length} configured witnesses`);
    }
    if (e.PAYLOG_WITNESS_CA !== undefined && !endpoints.some((w) => w.url.startsWith('https:'))) {
      throw new ConfigError('invalid settings:\n  PAYLOG_WITNESS_CA: only used with https witness URLs in PAYLOG_WITNESSES');
    }
    witnesses = { endpoints, quorum, ...(e.PAYLOG_WITNESS_CA !== undefined ? { caPath: resolve(e.PAYLOG_WITNESS_CA) } : {}) };
  } else if (e.PAYLOG_WITNESS_QUORUM !== undefined || e.PAYLOG_WITNESS_CA !== undefined) {
    const which = e.PAYLOG_WITNESS_QUORUM !== undefined ? 'PAYLOG_WITNESS_QUORUM' : 'PAYLOG_WITNESS_CA';
    throw new ConfigError(`invalid settings:\n  ${which}: only used with PAYLOG_WITNESSES`);
  }
  if (e.PAYLOG_CSE_KEY_OVERLAP_S < e.PAYLOG_CSE_MAX_AGE_S) {
    throw new ConfigError('invalid settings:\n  PAYLOG_CSE_KEY_OVERLAP_S: must be at least PAYLOG_CSE_MAX_AGE_S (a blob issued just before a rotation must still open)');
  }
  return {
    ...(witnesses ? { witnesses } : {}),
    dataDir: resolve(e.PAYLOG_DATA_DIR),
    signerStatePath: resolve(e.PAYLOG_SIGNER_STATE ?? join(e.PAYLOG_DATA_DIR, SIGNER_STATE_RELATIVE_PATH)),
    host: e.PAYLOG_HOST,
    port: e.PAYLOG_PORT,
    ...(e.DATABASE_URL ? { databaseUrl: e.DATABASE_URL } : {}),
    ...(e.PAYLOG_APP_DATABASE_URL ? { appDatabaseUrl: e.PAYLOG_APP_DATABASE_URL } : {}),
    kms: awsMode
      ? {
          mode: 'aws',
          ...(e.AWS_REGION ? { region: e.AWS_REGION } : {}),
          ...(e.AWS_ENDPOINT_URL_KMS ? { endpoint: e.AWS_ENDPOINT_URL_KMS } : {}),
          dataKeyId: e.PAYLOG_KMS_DATA_KEY_ID ?? DEFAULT_DATA_KEY_ALIAS,
          signingKeyId: e.PAYLOG_KMS_SIGNING_KEY_ID ?? DEFAULT_SIGNING_KEY_ALIAS,
          additionalSigningKeyIds,
        }
      : {
          mode: 'local',
          region: DEFAULT_LOCAL_KMS_REGION,
          dataKeyId: DEFAULT_DATA_KEY_ALIAS,
          signingKeyId: DEFAULT_SIGNING_KEY_ALIAS,
          additionalSigningKeyIds,
        },
    logOrigin: e.PAYLOG_LOG_ORIGIN,
    batchMax: e.PAYLOG_BATCH_MAX,
    batchLingerMs: e.PAYLOG_BATCH_LINGER_MS,
    releaseRatePerMinute: e.PAYLOG_RELEASE_RATE_PER_MINUTE,
    probeLimitPerHour: e.PAYLOG_PROBE_LIMIT_PER_HOUR,
    logLevel: e.PAYLOG_LOG_LEVEL,
    keys: {
      mode: e.PAYLOG_KEY_MODE,
      epoch: e.PAYLOG_KEY_EPOCH,
      cacheTtlSeconds: e.PAYLOG_EPOCH_KEY_CACHE_TTL_S,
      cacheMaxUses: e.PAYLOG_EPOCH_KEY_CACHE_MAX_USES,
      retention: e.PAYLOG_RETENTION,
    },
    ...(e.PAYLOG_WORKERS !== undefined ? { workers: e.PAYLOG_WORKERS } : {}),
    clusterAppends: e.PAYLOG_CLUSTER_APPENDS,
    budgets: {
      dbConnectTimeoutMs: e.PAYLOG_DB_CONNECT_TIMEOUT_MS,
      dbStatementTimeoutMs: e.PAYLOG_DB_STATEMENT_TIMEOUT_MS,
      dbLockTimeoutMs: e.PAYLOG_DB_LOCK_TIMEOUT_MS,
      dbIdleInTransactionTimeoutMs: e.PAYLOG_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      kmsConnectTimeoutMs: e.PAYLOG_KMS_CONNECT_TIMEOUT_MS,
      kmsRequestTimeoutMs: e.PAYLOG_KMS_REQUEST_TIMEOUT_MS,
      kmsMaxAttempts: e.PAYLOG_KMS_MAX_ATTEMPTS,
      requestTimeoutMs: e.PAYLOG_REQUEST_TIMEOUT_MS,
    },
    cse: {
      maxAgeS: e.PAYLOG_CSE_MAX_AGE_S,
      keyPeriod: e.PAYLOG_CSE_KEY_PERIOD,
      keyOverlapS: e.PAYLOG_CSE_KEY_OVERLAP_S,
      keyCacheTtlS: e.PAYLOG_CSE_KEY_CACHE_TTL_S,
    },
    cvcTtlMs: fixedDurationMs(e.PAYLOG_CVC_TTL)!,
    ...(tlsSet === 3
      ? { tls: { certPath: e.PAYLOG_TLS_CERT!, keyPath: e.PAYLOG_TLS_KEY!, caPath: e.PAYLOG_TLS_CA! } }
      : {}),
  };
}
