/**
 * Start-up step "checkpoint signer + witnesses": the KMS note signers, the witnesses (when
 * configured), the signer state file (singleton process only) and the checkpoint publisher;
 * later, the first checkpoint of this start.
 *
 * Contract: a signer state file that does not verify fails the start. Only the singleton process
 * (worker 0) signs; `publishFirstCheckpoint` never throws (a refusal is reported, and /readyz
 * says not ready).
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../config.js';
import type { Logger } from '../logging.js';
import type { Metrics } from '../metrics.js';
import type { Db } from '../db/connection.js';
import { kmsStartupStep } from '../kms/startup.js';
import { CheckpointPublisher, kmsNoteSigners, type PublishedKey, type Refusal, type StoredCheckpoint } from '../log/checkpoint-publisher.js';
import type { NoteVerifier } from '../log/note.js';
import { SignerStateFile } from '../log/signer-state.js';
import { registerWitnessMetrics } from '../log/witness/metrics.js';
import { WitnessCosigning } from '../log/witness/submitter.js';
import type { Cleanups } from './cleanups.js';
import type { KmsStep } from './kms.js';

export interface CheckpointSigning {
  /** Published checkpoint verifier keys (signed-note vkey + PEM). */
  publishedKeys: PublishedKey[];
  logVerifiers: NoteVerifier[];
  witnessing?: WitnessCosigning;
  /** Present in the singleton process only. */
  signerState?: SignerStateFile;
  publisher: CheckpointPublisher;
  /** Adds a listener of each newly signed checkpoint (tiles' signed size). */
  onPublished(f: (c: StoredCheckpoint) => void): void;
}

interface CheckpointSigningOptions {
  singletons: boolean;
  headKey: Buffer;
  signingKeyIds: string[];
  onSigningRefusal?: (r: (Refusal & { since: string }) | null) => void;
}

/** Witnesses as configured; without them, a warning in production (AWS KMS, signing process). */
function startWitnessing(config: Config, db: Db, logVerifiers: NoteVerifier[], singletons: boolean, logger: Logger, metrics: Metrics, cleanups: Cleanups): WitnessCosigning | undefined {
  if (config.witnesses) {
    const w = new WitnessCosigning(db, {
      witnesses: config.witnesses.endpoints,
      quorum: config.witnesses.quorum,
      ...(config.witnesses.caPath !== undefined ? { ca: readFileSync(config.witnesses.caPath, 'utf8') } : {}),
      logVerifiers,
      logger,
      metrics: registerWitnessMetrics(metrics.registry),
    });
    cleanups.push(() => w.close());
    return w;
  }
  if (config.kms.mode === 'aws' && singletons) {
    logger.warn(
      { setting: 'PAYLOG_WITNESSES' },
      'no witnesses configured: only the signer state file (PAYLOG_SIGNER_STATE) stands between a rolled-back database and a signed fork; configure witnesses in production (SECURITY.md "Never a signed fork")',
    );
  }
  return undefined;
}

/** Signers, witnesses, signer state and the publisher (not started yet). */
export async function createCheckpointSigning(
  config: Config,
  db: Db,
  kms: KmsStep,
  opts: CheckpointSigningOptions,
  logger: Logger,
  metrics: Metrics,
  cleanups: Cleanups,
): Promise<CheckpointSigning> {
  const { singletons } = opts;
  const { signers, keys: publishedKeys } = await kmsStartupStep(kms.signingKeyRefs[0]!, 'GetPublicKey', kms.where, () => kmsNoteSigners(kms.kms, config.logOrigin, opts.signingKeyIds));
  const logVerifiers = signers.map((s) => ({ name: s.name, publicKey: s.publicKey }));
  const witnessing = startWitnessing(config, db, logVerifiers, singletons, logger, metrics, cleanups);
  // The signer's memory outside the database: a file that does not verify stops the start.
  const signerState = singletons ? new SignerStateFile(config.signerStatePath, { origin: config.logOrigin, verifiers: logVerifiers }) : undefined;
  const lastSigned = await signerState?.load();
  if (lastSigned) logger.info({ size: lastSigned.size, path: config.signerStatePath }, 'signer state: last signed checkpoint');
  const published: Array<(c: StoredCheckpoint) => void> = [];
  const publisher = new CheckpointPublisher(db, {
    origin: config.logOrigin,
    signers,
    logger,
    headKey: opts.headKey,
    ...(signerState ? { state: signerState } : {}),
    ...(witnessing ? { witnesses: witnessing } : {}),
    onPublished: (c) => {
      for (const f of published) f(c);
      metrics.checkpointSignedAt.value = Date.now();
      metrics.checkpointSize.set(c.size);
    },
    onRefused: (r) => metrics.checkpointRefused.inc({ reason: r.reason }),
    onRefusalChanged: (r) => {
      metrics.checkpointRefusing.set(r ? 1 : 0);
      opts.onSigningRefusal?.(r);
    },
  });
  metrics.checkpointRefusing.set(0);
  return {
    publishedKeys,
    logVerifiers,
    ...(witnessing ? { witnessing } : {}),
    ...(signerState ? { signerState } : {}),
    publisher,
    onPublished: (f) => void published.push(f),
  };
}

/** The singleton signs the stored tree now, reports a refusal, then publishes on schedule. */
export async function publishFirstCheckpoint(signing: CheckpointSigning, opts: CheckpointSigningOptions, logger: Logger, metrics: Metrics, cleanups: Cleanups): Promise<void> {
  if (!opts.singletons) return;
  const { publisher } = signing;
  try {
    const current = await publisher.publish();
    if (current) {
      metrics.checkpointSignedAt.value ??= Date.now();
      metrics.checkpointSize.set(current.size);
    }
  } catch (e) {
    logger.error({ code: (e as { code?: string }).code }, 'initial checkpoint not signed');
  }
  opts.onSigningRefusal?.(publisher.refusal());
  publisher.start();
  cleanups.push(() => publisher.close());
}
