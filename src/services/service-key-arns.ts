/**
 * The ARNs of the service's own KMS keys (the configured data and signing keys), for the key
 * lifecycle: such a key is NEVER a rewrap target and NEVER scheduled for deletion by retention.
 *
 * Contracts:
 * - Resolved by DescribeKey once per process; the configured ids are members too (an id may be
 *   an alias or an ARN). A failed lookup is not remembered: the next call tries again.
 */
import type { KmsBackend } from '../kms/backend.js';

export class ServiceKeyArns {
  private arns: Promise<Set<string>> | undefined;

  constructor(
    private readonly kms: Pick<KmsBackend, 'keyArn'>,
    private readonly ids: string[],
  ) {}

  /** ARNs of the configured data and signing keys (DescribeKey once). */
  async get(): Promise<Set<string>> {
    this.arns ??= Promise.all(this.ids.map((id) => this.kms.keyArn(id))).then((a) => new Set([...this.ids, ...a]));
    try {
      return await this.arns;
    } catch (e) {
      this.arns = undefined;
      throw e;
    }
  }
}
