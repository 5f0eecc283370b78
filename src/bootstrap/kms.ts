/**
 * Start-up step "KMS choice": the real AWS SDK client, against the dev-only local endpoint
 * (KMS mode `local`: started here, or the cluster primary's) or AWS; then the service's KMS keys
 * resolved (local: created if missing) or checked (AWS: every configured key must answer).
 *
 * Contract: resolves only after every configured key is usable; a key that is not fails the
 * start with the setting that names it (src/kms/startup.ts). It never reads the database.
 */
import { DEFAULT_AWS_REGION, type Config } from '../config.js';
import type { Logger } from '../logging.js';
import type { Metrics } from '../metrics.js';
import { createKmsClient, PaylogKms } from '../kms/client.js';
import type { KmsBackend } from '../kms/backend.js';
import type { LocalKmsEndpoint } from '../kms/local/server.js';
import { checkConfiguredKeys, type KeyRef, type KmsWhere } from '../kms/startup.js';
import type { DataKeySource } from '../crypto/envelope.js';
import type { Cleanups } from './cleanups.js';
import { startDevLocalKms } from './dev.js';

export interface KmsStep {
  kms: KmsBackend;
  /** The local endpoint this process started (not a cluster primary's). */
  local?: LocalKmsEndpoint;
  where: KmsWhere;
  dataKeyRef: KeyRef;
  signingKeyRefs: KeyRef[];
}

/** The service's keys as KMS names them (local mode: the key ids the aliases resolved to). */
interface KmsKeys {
  dataKeyId: string;
  signingKeyIds: string[];
  /** Envelope v1 data keys under the data key. */
  dataKeys: DataKeySource;
}

interface ClientSettings {
  endpoint?: string;
  region: string;
  local?: boolean;
}

/** Where the KMS client connects: the given or a started local endpoint, or AWS. */
async function chooseEndpoint(config: Config, localKmsUrl: string | undefined, logger: Logger, cleanups: Cleanups): Promise<{ settings: ClientSettings; local?: LocalKmsEndpoint }> {
  if (config.kms.mode === 'local' && localKmsUrl) return { settings: { endpoint: localKmsUrl, region: config.kms.region, local: true } };
  if (config.kms.mode === 'local') {
    const local = await startDevLocalKms(config);
    cleanups.push(() => local.close());
    return { settings: { endpoint: local.url, region: config.kms.region, local: true }, local };
  }
  if (config.kms.region === undefined) logger.info({ region: DEFAULT_AWS_REGION }, 'AWS_REGION is not set: the KMS client uses the default region');
  return { settings: { ...(config.kms.endpoint ? { endpoint: config.kms.endpoint } : {}), region: config.kms.region ?? DEFAULT_AWS_REGION } };
}

/** KMS: real client, local endpoint unless AWS settings are given. */
export async function connectKms(config: Config, localKmsUrl: string | undefined, logger: Logger, metrics: Metrics, cleanups: Cleanups): Promise<KmsStep> {
  const { settings, local } = await chooseEndpoint(config, localKmsUrl, logger, cleanups);
  const kmsClient = createKmsClient({
    ...settings,
    connectTimeoutMs: config.budgets.kmsConnectTimeoutMs,
    requestTimeoutMs: config.budgets.kmsRequestTimeoutMs,
    maxAttempts: config.budgets.kmsMaxAttempts,
  });
  cleanups.push(async () => kmsClient.destroy());
  const kms = new PaylogKms(
    kmsClient,
    (operation, outcome) => metrics.kmsRequests.inc({ operation, outcome }),
    (operation, seconds) => metrics.kmsDuration.observe({ operation }, seconds),
  );
  return {
    kms,
    ...(local ? { local } : {}),
    where: { region: settings.region, ...(settings.endpoint ? { endpoint: settings.endpoint } : {}) },
    dataKeyRef: { setting: 'PAYLOG_KMS_DATA_KEY_ID', keyId: config.kms.dataKeyId, kind: 'data' },
    signingKeyRefs: [
      { setting: 'PAYLOG_KMS_SIGNING_KEY_ID', keyId: config.kms.signingKeyId, kind: 'signing' },
      ...config.kms.additionalSigningKeyIds.map((keyId): KeyRef => ({ setting: 'PAYLOG_KMS_ADDITIONAL_SIGNING_KEY_IDS', keyId, kind: 'signing' })),
    ],
  };
}

/** The configured keys: created if missing (local endpoint), else checked usable (AWS). */
export async function resolveKmsKeys(config: Config, step: KmsStep): Promise<KmsKeys> {
  const { kms } = step;
  let dataKeyId = config.kms.dataKeyId;
  let signingKeyIds = [config.kms.signingKeyId, ...config.kms.additionalSigningKeyIds];
  if (config.kms.mode === 'local') {
    dataKeyId = await kms.ensureKey(dataKeyId.replace(/^alias\//, ''), 'SYMMETRIC_DEFAULT');
    const ids: string[] = [];
    for (const id of signingKeyIds) ids.push(await kms.ensureKey(id.replace(/^alias\//, ''), 'ECC_NIST_EDWARDS25519'));
    signingKeyIds = ids;
  } else {
    await checkConfiguredKeys(kms, [step.dataKeyRef, ...step.signingKeyRefs], step.where);
  }
  const dataKeys: DataKeySource = {
    generateDataKey: (context) => kms.generateDataKey(dataKeyId, context),
    decryptDataKey: (wrapped, context, keyId) => kms.decryptDataKey(wrapped, context, keyId),
  };
  return { dataKeyId, signingKeyIds, dataKeys };
}
