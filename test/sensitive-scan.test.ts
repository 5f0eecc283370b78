/**
 * Issue 20: one walk over a request body answers both key questions of validation (SAD first,
 * then reserved keys) exactly as two walks did: same verdict, same path, same term.
 */
import { describe, expect, it } from 'vitest';
import { classifySensitiveKey, findKeysDeep, type SensitiveKeyMatch } from '../src/validation/sensitive.js';

/** The walk validation ran twice before issue 20 (src/validation/sensitive.ts at the base commit), kept as the reference. */
function findKeyDeep(value: unknown, classify: (key: string) => string | null): SensitiveKeyMatch | null {
  type PathNode = { parent: PathNode | null; segment: string | number };
  const pathOf = (node: PathNode | null) => {
    const out: Array<string | number> = [];
    for (let n = node; n !== null; n = n.parent) out.push(n.segment);
    return out.reverse();
  };
  const stack: Array<{ node: unknown; at: PathNode | null }> = [{ node: value, at: null }];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const { node, at } = stack.pop()!;
    if (node === null || typeof node !== 'object' || seen.has(node)) continue;
    seen.add(node);
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) stack.push({ node: node[i] as unknown, at: { parent: at, segment: i } });
      continue;
    }
    const keys = Object.keys(node);
    for (const key of keys) {
      const term = classify(key);
      if (term !== null) return { path: pathOf({ parent: at, segment: key }), term };
    }
    for (let i = keys.length - 1; i >= 0; i--) stack.push({ node: (node as Record<string, unknown>)[keys[i]!], at: { parent: at, segment: keys[i]! } });
  }
  return null;
}

const RESERVED = new Set(['__proto__', 'constructor', 'prototype']);
const reserved = (k: string) => (RESERVED.has(k) ? k : null);
const KEYS = ['amount', 'pan', 'cvv', 'card_Security-Code', 'constructor', '__proto__', 'prototype', 'trackingNumber', 'meta', 'x', 'PIN', 'shipping', 'items'];

/** Deterministic pseudo-random JSON text with keys from KEYS (parsed, so `__proto__` is an own key). */
function randomBody(seed: number): unknown {
  let x = seed >>> 0 || 1;
  const next = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const value = (depth: number): string => {
    const kind = depth > 4 ? 0 : next(4);
    if (kind === 0) return String(next(100));
    if (kind === 1) return `[${Array.from({ length: next(4) }, () => value(depth + 1)).join(',')}]`;
    const keys = [...new Set(Array.from({ length: next(5) }, () => KEYS[next(KEYS.length)]!))];
    return `{${keys.map((k) => `${JSON.stringify(k)}:${value(depth + 1)}`).join(',')}}`;
  };
  return JSON.parse(value(0));
}

describe('findKeysDeep = two findKeyDeep walks', () => {
  it('on 5,000 random bodies: the SAD hit if any, else the first reserved key, at the same path', () => {
    let sad = 0;
    let res = 0;
    for (let seed = 1; seed <= 5000; seed++) {
      const body = randomBody(seed);
      const one = findKeysDeep(body, classifySensitiveKey, reserved);
      const first = findKeyDeep(body, classifySensitiveKey);
      const second = first === null ? findKeyDeep(body, reserved) : null;
      expect({ seed, sad: one.primary, reserved: one.secondary }).toEqual({ seed, sad: first, reserved: second });
      if (first) sad++;
      else if (second) res++;
    }
    expect(sad).toBeGreaterThan(100); // both branches are exercised
    expect(res).toBeGreaterThan(100);
  });

  it('a reserved key before a SAD key is still a SAD verdict; cycles are visited once', () => {
    const body = JSON.parse('{"constructor":1,"a":{"cvc":2}}');
    expect(findKeysDeep(body, classifySensitiveKey, reserved)).toEqual({ primary: { path: ['a', 'cvc'], term: 'cvc' }, secondary: null });
    const cyclic: Record<string, unknown> = { prototype: 1 };
    cyclic['self'] = cyclic;
    expect(findKeysDeep(cyclic, classifySensitiveKey, reserved)).toEqual({ primary: null, secondary: { path: ['prototype'], term: 'prototype' } });
  });
});
