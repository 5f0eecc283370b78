/**
 * Verify (or fetch) one log entry's inclusion proof offline, as a C2SP tlog-proof bundle.
 *
 *   npm run verify-proof -- --bundle FILE [--log-key <vkey|file>]... [--transaction-id ID] [--json]
 *   npm run verify-proof -- --fetch --url <base URL> --cacert <ca> --cert <cert> --key <client key>
 *                           --transaction-id ID --out FILE [--log-key ... | --trust-server-key]
 *
 * Verification recomputes the leaf hash from the leaf bytes carried in the bundle, checks the
 * RFC 9162 inclusion proof against the signed checkpoint and prints the non-secret leaf fields.
 * `--fetch` builds the bundle from the latest checkpoint (auditor or the assigned processor's
 * certificate) and verifies it before writing it.
 *
 * Exit codes: 0 verified, 1 did not verify, 2 usage or connection errors.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { checkpointSize, LogClient, LogClientError } from '../src/audit/index.js';
import { formatProofBundle, parseProofBundle, verifyProofBundle, type ProofBundle, type ProofVerification } from '../src/audit/index.js';
import { loadVerifierKeys, toNoteVerifiers } from '../src/audit/index.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

class UsageError extends Error {}

interface Opts {
  bundle?: string;
  fetch?: boolean;
  url?: string;
  cacert?: string;
  cert?: string;
  key?: string;
  transactionId?: string;
  out?: string;
  logKey: string[];
  trustServerKey?: boolean;
  json?: boolean;
}

async function fetchBundle(client: LogClient, transactionId: string): Promise<ProofBundle> {
  const checkpoint = await client.checkpoint();
  const size = checkpointSize(checkpoint);
  const proof = await client.inclusionProofFor(transactionId, size);
  let leaf = proof.leaf;
  if (leaf === undefined) {
    // The entries route is auditor-only; a processor needs the server to include the leaf in the proof answer.
    const page = await client.entriesPage(proof.index, proof.index + 1);
    leaf = page.entries.find((e) => e.index === proof.index)?.leaf as Buffer | undefined;
    if (leaf === undefined) throw new LogClientError('the server returned no leaf for that index');
  }
  return { leaf: Buffer.from(leaf), index: proof.index, hashes: proof.hashes, checkpoint };
}

function describe(v: ProofVerification): string {
  const lines = [v.ok ? 'OK: entry is included in the signed log' : 'FAILED: proof did not verify'];
  if (v.origin !== undefined) lines.push(`  origin:     ${v.origin}`, `  tree size:  ${v.treeSize}`);
  lines.push(`  index:      ${v.index}`);
  if (v.leafHash !== undefined) lines.push(`  leaf hash:  ${v.leafHash}`);
  if (v.verifiedKeys.length > 0) lines.push(`  signed by:  ${v.verifiedKeys.join(', ')}`);
  if (v.leaf !== undefined) {
    const l = v.leaf as Record<string, unknown>;
    for (const k of ['type', 'time', 'transactionId', 'processor', 'paymentMethodType', 'action', 'outcome', 'purpose', 'event']) {
      if (l[k] !== undefined) lines.push(`  ${`${k}:`.padEnd(11)} ${String(l[k])}`);
    }
    const amount = l['amount'] as { value: number; currency: string } | undefined;
    if (amount) lines.push(`  amount:     ${amount.value} ${amount.currency} (minor units)`);
  }
  for (const f of v.failures) lines.push(`  - [${f.code}] ${f.message}`);
  return `${lines.join('\n')}\n`;
}

async function run(o: Opts): Promise<number> {
  if (o.fetch === (o.bundle !== undefined)) throw new UsageError('give exactly one of --bundle or --fetch');
  let client: LogClient | undefined;
  try {
    let vkeys: string[] = [];
    try {
      for (const k of o.logKey) vkeys.push(...loadVerifierKeys(k));
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    let bundle: ProofBundle;
    let text: string;
    if (o.fetch) {
      if (!o.url || !o.cacert || !o.cert || !o.key || !o.transactionId || !o.out) {
        throw new UsageError('--fetch needs --url, --cacert, --cert, --key, --transaction-id and --out');
      }
      try {
        client = LogClient.fromFiles(o.url, o.cacert, o.cert, o.key);
      } catch (e) {
        throw new UsageError(`cannot read TLS files: ${(e as Error).message}`);
      }
      bundle = await fetchBundle(client, o.transactionId);
      text = formatProofBundle(bundle);
      if (vkeys.length === 0 && o.trustServerKey) {
        vkeys = (await client.keys()).vkeys;
        process.stderr.write(`WARNING: --trust-server-key: trusting the server-published key(s): ${vkeys.join(', ')}\n`);
      }
    } else {
      try {
        text = readFileSync(o.bundle as string, 'utf8');
        bundle = parseProofBundle(text);
      } catch (e) {
        throw new UsageError(`cannot read bundle: ${(e as Error).message}`);
      }
    }
    if (vkeys.length === 0) throw new UsageError('no trusted log key: pass --log-key <vkey|file> (or --trust-server-key with --fetch)');
    let verifiers;
    try {
      verifiers = toNoteVerifiers(vkeys);
    } catch (e) {
      throw new UsageError(`bad log key: ${(e as Error).message}`);
    }
    const v = verifyProofBundle(bundle, verifiers, o.transactionId !== undefined ? { transactionId: o.transactionId } : {});
    if (o.fetch && v.ok) writeFileSync(o.out as string, text, { flag: 'wx' });
    process.stdout.write(o.json ? `${JSON.stringify(v, null, 2)}\n` : describe(v));
    if (o.fetch && v.ok && !o.json) process.stdout.write(`  written:    ${o.out}\n`);
    return v.ok ? EXIT_OK : EXIT_FAILURE;
  } finally {
    client?.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('verify-proof')
    .description('Verify one entry\'s inclusion in the signed log from a C2SP tlog-proof bundle (or fetch one)')
    .option('--bundle <file>', 'tlog-proof bundle to verify')
    .option('--fetch', 'fetch a bundle from the service and write it to --out')
    .option('--url <url>', 'paylog base URL (with --fetch)')
    .option('--cacert <file>', 'CA certificate (PEM)')
    .option('--cert <file>', 'client certificate (PEM): auditor or the assigned processor')
    .option('--key <file>', 'client private key (PEM) — the TLS key, not the log key')
    .option('--transaction-id <id>', 'transaction to fetch; when verifying, require the leaf to be about it')
    .option('--out <file>', 'where --fetch writes the bundle (must not exist)')
    .addOption(new Option('--log-key <vkey|file>', 'trusted checkpoint verifier key (repeatable)').argParser((v: string, p: string[]) => [...p, v]).default([]))
    .option('--trust-server-key', 'with --fetch: trust the server-published key (trust on first use)')
    .option('--json', 'print only JSON')
    .exitOverride();
  try {
    await program.parseAsync(argv);
    return await run(program.opts<Opts>());
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    process.stderr.write(`verify-proof: ${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
}

process.exitCode = await main(process.argv);
