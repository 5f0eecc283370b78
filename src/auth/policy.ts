/**
 * Authorization policy — the one place that decides who may do what (PCI DSS 7.2.1–7.2.2:
 * access by job function and need to know; 7.2.5: least privilege). Deny by default: an action
 * not listed for a role is refused.
 */
import { PaylogError } from '../errors.js';
import type { Principal } from './principal.js';

export type Action =
  | 'transaction:create'
  | 'transaction:read'
  | 'transaction:release'
  | 'transaction:accesses'
  | 'log:checkpoint'
  | 'log:key'
  | 'log:entries'
  | 'log:proof:inclusion'
  | 'log:proof:consistency'
  | 'log:tiles'
  | 'admin:revoke'
  | 'admin:processors'
  | 'admin:keys'
  | 'admin:shred'
  // Issue 18: forwards to a processor's registered destinations.
  | 'transaction:forward'
  | 'transaction:forwards'
  | 'admin:destinations';

/** What a decision may depend on besides the principal: the processor a transaction is assigned to. */
interface ResourceContext {
  assignedProcessor?: string;
}

type Rule = (p: Principal, r: ResourceContext) => boolean;
const anyone: Rule = () => true;
const assignedProcessor: Rule = (p, r) => p.role === 'processor' && r.assignedProcessor !== undefined && p.name === r.assignedProcessor;

/** Role × action matrix. Absent = denied. */
export const POLICY: Readonly<Record<Principal['role'], Partial<Record<Action, Rule>>>> = {
  checkout: {
    'transaction:create': anyone,
    'transaction:read': anyone,
    'transaction:forward': anyone,
    'transaction:forwards': anyone,
    'log:checkpoint': anyone,
    'log:key': anyone,
  },
  processor: {
    'transaction:read': assignedProcessor,
    'transaction:release': assignedProcessor,
    'transaction:accesses': assignedProcessor,
    'log:checkpoint': anyone,
    'log:key': anyone,
    'log:proof:inclusion': assignedProcessor,
  },
  auditor: {
    'transaction:read': anyone,
    'transaction:accesses': anyone,
    'transaction:forwards': anyone,
    'log:checkpoint': anyone,
    'log:key': anyone,
    'log:entries': anyone,
    'log:proof:inclusion': anyone,
    'log:proof:consistency': anyone,
    'log:tiles': anyone,
  },
  admin: {
    'log:checkpoint': anyone,
    'log:key': anyone,
    'admin:revoke': anyone,
    'admin:processors': anyone,
    'admin:keys': anyone,
    'admin:shred': anyone,
    'admin:destinations': anyone,
  },
};

/** True when the policy allows `action` for `principal` on the resource. */
function isAllowed(principal: Principal, action: Action, resource: ResourceContext = {}): boolean {
  const rule = POLICY[principal.role]?.[action];
  return rule !== undefined && rule(principal, resource);
}

/** Throws FORBIDDEN unless allowed. */
export function authorize(principal: Principal, action: Action, resource: ResourceContext = {}): void {
  if (!isAllowed(principal, action, resource)) {
    throw new PaylogError('FORBIDDEN', 'this principal may not perform this action');
  }
}

/**
 * For per-transaction actions where existence must not leak: a role that may act on SOME
 * transactions but not this one gets NOT_FOUND (same answer as for an unknown id); a role that may
 * never act gets FORBIDDEN.
 */
export function authorizeOnTransaction(principal: Principal, action: Action, resource: ResourceContext): void {
  if (isAllowed(principal, action, resource)) return;
  if (POLICY[principal.role]?.[action] !== undefined) {
    throw new PaylogError('NOT_FOUND', 'no such transaction');
  }
  throw new PaylogError('FORBIDDEN', 'this principal may not perform this action');
}
