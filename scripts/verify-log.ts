/**
 * Auditor: verify a paylog log trusting nothing the service says.
 *
 *   npm run verify-log -- --url <base URL> --cacert <ca> --cert <cert> --key <client key>
 *                         [--state FILE] [--json] [--log-key <vkey|file>]... [--trust-server-key]
 *   npm run verify-log -- --file <export.ndjson> [--state FILE] [--json] [--log-key ...]
 *
 * `--key` is the client TLS private key (contract); the checkpoint verifier key is `--log-key`
 * (repeatable; a vkey string or a file of vkey lines). Without `--log-key`, keys pinned in the
 * state file are used; `--trust-server-key` trusts the server's (or the export's) own keys —
 * trust on first use, flagged loudly.
 *
 * Exit codes: 0 everything verified, 1 something did not verify (first bad index named when
 * known), 2 usage or connection errors. The state is saved (atomically) only on success.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { isPaylogError } from '../src/errors.js';
import {
  formatReport,
  formatState,
  loadVerifierKeys,
  parseState,
  toNoteVerifiers,
  type VerifierState,
  type VerifyReport,
} from '../src/log/verifier.js';
import { exportKeys, LogClient, LogClientError, verifyExportFile, verifyRemoteLog } from '../src/log/export.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

class UsageError extends Error {}

interface Opts {
  url?: string;
  cacert?: string;
  cert?: string;
  key?: string;
  file?: string;
  state?: string;
  json?: boolean;
  logKey: string[];
  trustServerKey?: boolean;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function buildProgram(): Command {
  return new Command('verify-log')
    .description('Verify a paylog Merkle log (live over mTLS, or an NDJSON export) against a signed checkpoint')
    .option('--url <url>', 'paylog base URL, e.g. https://127.0.0.1:8443')
    .option('--cacert <file>', 'CA certificate (PEM) to trust for the server')
    .option('--cert <file>', 'auditor client certificate (PEM)')
    .option('--key <file>', 'auditor client private key (PEM) — the TLS key, not the log key')
    .option('--file <export>', 'verify an NDJSON export offline instead of a live service')
    .option('--state <file>', 'last verified checkpoint; proves consistency with it and is updated on success')
    .option('--json', 'print only a JSON report')
    .addOption(new Option('--log-key <vkey|file>', 'trusted checkpoint verifier key (repeatable)').argParser(collect).default([]))
    .option('--trust-server-key', 'trust the checkpoint key the server (or export) publishes (trust on first use)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
}

function saveStateAtomically(path: string, state: VerifierState): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, formatState(state), { mode: 0o600 });
  renameSync(tmp, path);
}

function progressBar(enabled: boolean): { update(n: number, total: number): void; stop(): void } {
  if (!enabled) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar({ stream: process.stderr, format: 'entries {bar} {value}/{total} ({percentage}%)' }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(n, total) {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      if (n % 256 === 0 || n === total) bar.update(n);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

async function run(opts: Opts): Promise<number> {
  const live = opts.url !== undefined;
  if (live === (opts.file !== undefined)) throw new UsageError('give exactly one of --url or --file');
  if (live && (!opts.cacert || !opts.cert || !opts.key)) throw new UsageError('--url needs --cacert, --cert and --key');

  let state: VerifierState | undefined;
  if (opts.state !== undefined && existsSync(opts.state)) {
    try {
      state = parseState(readFileSync(opts.state, 'utf8'));
    } catch (e) {
      throw new UsageError(`cannot use state file: ${(e as Error).message}`);
    }
  }

  let client: LogClient | undefined;
  try {
    if (live) client = LogClient.fromFiles(opts.url as string, opts.cacert as string, opts.cert as string, opts.key as string);
  } catch (e) {
    throw new UsageError(`cannot read TLS files: ${(e as Error).message}`);
  }

  try {
    // Trust: --log-key, else keys pinned in the state, else (flagged) the server's own keys.
    let vkeys: string[] = [];
    let trust: 'log-key' | 'state' | 'server-key' = 'log-key';
    try {
      for (const k of opts.logKey) vkeys.push(...loadVerifierKeys(k));
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (vkeys.length === 0 && state !== undefined && state.keys.length > 0) {
      vkeys = state.keys;
      trust = 'state';
    }
    if (vkeys.length === 0 && opts.trustServerKey) {
      vkeys = client ? (await client.keys()).vkeys : await exportKeys(opts.file as string);
      trust = 'server-key';
      process.stderr.write(
        'WARNING: --trust-server-key: trusting the checkpoint key the log itself publishes (trust on first use).\n' +
          `         Compare it with an out-of-band copy: ${vkeys.join(', ')}\n`,
      );
    }
    if (vkeys.length === 0) throw new UsageError('no trusted log key: pass --log-key <vkey|file> (or --trust-server-key)');
    let verifiers;
    try {
      verifiers = toNoteVerifiers(vkeys);
    } catch (e) {
      throw new UsageError(`bad log key: ${(e as Error).message}`);
    }

    const bar = progressBar(!opts.json && process.stderr.isTTY === true);
    let report: VerifyReport;
    try {
      const common = { verifiers, ...(state ? { state } : {}), onProgress: (n: number, t: number) => bar.update(n, t) };
      report = client ? await verifyRemoteLog(client, common) : await verifyExportFile(opts.file as string, common);
    } finally {
      bar.stop();
    }

    let stateSaved = false;
    if (report.ok && report.newState && opts.state !== undefined) {
      saveStateAtomically(opts.state, { ...report.newState, keys: vkeys });
      stateSaved = true;
    }
    const { newState: _omit, ...publicReport } = report;
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ ...publicReport, trust, stateSaved }, null, 2)}\n`);
    } else {
      process.stdout.write(formatReport(report));
      process.stdout.write(`  trust:      ${trust === 'server-key' ? 'SERVER-PUBLISHED KEY (trust on first use)' : trust === 'state' ? 'keys pinned in state file' : '--log-key'}\n`);
      if (opts.state !== undefined) process.stdout.write(`  state:      ${stateSaved ? `saved to ${opts.state}` : 'not updated'}\n`);
    }
    if (report.ok) return EXIT_OK;
    const onlyFetch = report.failures.every((f) => f.code === 'FETCH_FAILED');
    return onlyFetch ? EXIT_USAGE : EXIT_FAILURE;
  } finally {
    client?.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return await run(program.opts<Opts>());
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    if (e instanceof UsageError) {
      process.stderr.write(`verify-log: ${e.message}\n`);
      return EXIT_USAGE;
    }
    if (e instanceof LogClientError) {
      process.stderr.write(`verify-log: cannot reach the log: ${e.message}\n`);
      return EXIT_USAGE;
    }
    if (isPaylogError(e) && e.code === 'BAD_REQUEST') {
      process.stderr.write(`verify-log: ${e.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`verify-log: ${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
}

process.exitCode = await main(process.argv);
