/**
 * Auditor: verify a paylog log trusting nothing the service says.
 *
 *   npm run verify-log -- --url <base URL> --cacert <ca> --cert <cert> --key <client key>
 *                         [--state FILE] [--json] [--log-key <vkey|file>]...
 *   npm run verify-log -- --file <export.ndjson> [--state FILE] [--json] (--log-key ... | --trust-server-key)
 *
 * `--key` is the client TLS private key (contract); the checkpoint verifier key is `--log-key`
 * (repeatable; a vkey string or a file of vkey lines). Trust, strongest first:
 *   1. `--log-key` — keys obtained out of band;
 *   2. keys pinned in the `--state` file by an earlier successful run;
 *   3. live only, the default (also `--trust-server-key`): the keys the server publishes at
 *      `/v1/log/key`, fetched over the CA-pinned mTLS channel — trust on first use, flagged with
 *      a WARNING on stderr, reported as `trust: "server-key"`, and pinned into the state file on
 *      success so later runs never trust the server again.
 * An export's own keys are trusted only with an explicit `--trust-server-key` (the file is not
 * an authenticated channel).
 *
 * Exit codes: 0 everything verified; 1 something did not verify, including answers that arrived
 * but were malformed or refused (HTTP errors) and malformed export lines — the first bad index is
 * named when known; 2 usage errors and transport failures (connection refused/reset, TLS, DNS,
 * timeout, unreadable file). The state is saved (atomically) only on success. No stack traces.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import cliProgress from 'cli-progress';
import {
  errorMessage,
  failureReport,
  formatReport,
  formatState,
  loadVerifierKeys,
  parseState,
  toNoteVerifiers,
  TRANSPORT_FAILURE_CODES,
  type VerifierState,
  type VerifyReport,
} from '../src/audit/index.js';
import type { NoteVerifier } from '../src/log/note.js';
import { exportKeys, isAnsweredFailure, LogClient, LogClientError, verifyExportFile, verifyRemoteLog } from '../src/audit/index.js';
import { directoryTileSource, httpsTileSource } from '../src/audit/index.js';
import { verifyTiledLog } from '../src/audit/index.js';
import { DEFAULT_MAX_AGE_SECONDS, parseDuration, witnessPolicy, type WitnessPolicy } from '../src/audit/index.js';

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
  logKey?: string[];
  trustServerKey?: boolean;
  tiles?: boolean;
  tilesDir?: string;
  witness?: string[];
  witnessQuorum?: string;
  maxAge?: string;
}

/** Where the trusted checkpoint keys came from (reported as `trust`). */
type Trust = 'log-key' | 'state' | 'server-key';

const TRUST_LABELS: Record<Trust, string> = {
  'log-key': '--log-key',
  state: 'keys pinned in state file',
  'server-key': 'SERVER-PUBLISHED KEY (trust on first use)',
};

const HELP_AFTER = `
Trust (strongest first): --log-key; else keys pinned in the --state file; else, for --url,
the keys the server publishes at /v1/log/key over the CA-pinned mTLS channel (trust on first
use: a WARNING is printed on stderr and the keys are pinned into --state on success). An
export's own keys (--file) are trusted only with --trust-server-key.

Sources: --url (entries API, or its C2SP tlog-tiles with --tiles), --file (NDJSON export),
--tiles-dir (static tiles from export-tiles). With --witness, the checkpoint must also carry
fresh cosignatures from --witness-quorum of the given witnesses (C2SP tlog-cosignature).

Exit codes: 0 verified; 1 not verified (bad, refused or malformed answers included; the first
bad index is named when known); 2 usage error or no answer (connection, TLS, DNS, timeout,
unreadable file).
`;

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function buildProgram(): Command {
  return new Command('verify-log')
    .usage(
      '--url <base URL> --cacert <ca> --cert <cert> --key <key> [--state <file>] [--json] [--log-key <vkey|file>]...\n' +
        '       verify-log --file <export.ndjson> [--state <file>] [--json] (--log-key <vkey|file>... | --trust-server-key)',
    )
    .description('Verify a paylog Merkle log (live over mTLS, or an NDJSON export) against a signed checkpoint')
    .option('--url <url>', 'paylog base URL, e.g. https://127.0.0.1:8443')
    .option('--cacert <file>', 'CA certificate (PEM) to trust for the server')
    .option('--cert <file>', 'auditor client certificate (PEM)')
    .option('--key <file>', 'auditor client private key (PEM) — the TLS key, not the log key')
    .option('--file <export>', 'verify an NDJSON export offline instead of a live service')
    .option('--state <file>', 'last verified checkpoint and pinned keys; proves consistency with it and is updated on success')
    .option('--json', 'print only a JSON report on stdout')
    .addOption(new Option('--log-key <vkey|file>', 'trusted checkpoint verifier key, obtained out of band (repeatable)').argParser(collect))
    .option('--tiles', 'with --url: verify from the C2SP tlog-tiles under /v1/log/tiles instead of the entries API')
    .option('--tiles-dir <dir>', 'verify a static tlog-tiles copy (npm run export-tiles) instead of a live service')
    .addOption(new Option('--witness <vkey>', 'trusted witness verifier key (tlog-cosignature type 0x04, repeatable): the checkpoint must carry its cosignature').argParser(collect))
    .option('--witness-quorum <k>', 'how many of the --witness keys must have cosigned (default: all)')
    .option('--max-age <duration>', 'oldest acceptable cosignature, e.g. 3600, 30m, 24h, 7d (default 24h)')
    .option('--trust-server-key', "trust the keys the server publishes (the default for --url when no key is given or pinned); with --file, the export's own keys")
    .addHelpText('after', HELP_AFTER)
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

/** Prints the report (JSON on stdout with --json, else human-readable) and returns the exit code. */
function emit(opts: Opts, report: VerifyReport, trust: Trust, trustedKeys: readonly string[], stateSaved: boolean): number {
  const { newState: _omit, ...publicReport } = report;
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ ...publicReport, trust, trustedKeys, stateSaved }, null, 2)}\n`);
  } else {
    process.stdout.write(formatReport(report));
    process.stdout.write(`  trust:      ${TRUST_LABELS[trust]}\n`);
    if (opts.state !== undefined) process.stdout.write(`  state:      ${stateSaved ? `saved to ${opts.state}` : 'not updated'}\n`);
  }
  if (report.ok) return EXIT_OK;
  // Exit 2 only when nothing arrived to verify (transport); anything wrong that arrived is exit 1.
  return report.failures.every((f) => TRANSPORT_FAILURE_CODES.has(f.code)) ? EXIT_USAGE : EXIT_FAILURE;
}

/** The loud trust-on-first-use notice (stderr only, so --json stdout stays a report). */
function warnTrustOnFirstUse(opts: Opts, vkeys: readonly string[]): void {
  const source = opts.file !== undefined ? 'the keys listed in the export file itself' : 'the keys the server publishes at /v1/log/key';
  const pin =
    opts.state !== undefined
      ? `They are pinned into ${opts.state} if this run verifies; later runs trust only them.`
      : 'They are NOT pinned: pass --state FILE (or --log-key) so later runs do not trust the log again.';
  process.stderr.write(
    `WARNING: no --log-key given and no key pinned in a state file: trusting ${source} (trust on first use).\n` +
      `         Compare with an out-of-band copy: ${vkeys.join(', ')}\n` +
      `         ${pin}\n`,
  );
}

/** Trusted keys, strongest source first; or a failure report when the server's own keys are unusable. */
async function resolveTrust(
  opts: Opts,
  state: VerifierState | undefined,
  client: LogClient | undefined,
): Promise<{ trust: Trust; vkeys: string[]; verifiers: NoteVerifier[] } | { trust: Trust; report: VerifyReport }> {
  const given: string[] = [];
  try {
    for (const k of opts.logKey ?? []) given.push(...loadVerifierKeys(k));
  } catch (e) {
    throw new UsageError(errorMessage(e));
  }
  if (given.length > 0 || (state !== undefined && state.keys.length > 0)) {
    const trust: Trust = given.length > 0 ? 'log-key' : 'state';
    const vkeys = given.length > 0 ? given : (state as VerifierState).keys;
    try {
      return { trust, vkeys, verifiers: toNoteVerifiers(vkeys) };
    } catch (e) {
      throw new UsageError(`bad log key${trust === 'state' ? ' in state file' : ''}: ${errorMessage(e)}`);
    }
  }
  if (client === undefined && !opts.trustServerKey) {
    throw new UsageError("no trusted log key: pass --log-key <vkey|file> (an export's own keys are trusted only with --trust-server-key)");
  }
  const trust: Trust = 'server-key';
  let vkeys: string[];
  try {
    vkeys = client !== undefined ? (await client.keys()).vkeys : await exportKeys(opts.file as string);
  } catch (e) {
    if (!isAnsweredFailure(e)) throw e; // transport / unreadable file: exit 2
    return { trust, report: failureReport({ code: e.failureCode, message: `log key unavailable: ${errorMessage(e)}` }) };
  }
  const code = client !== undefined ? 'BAD_RESPONSE' : 'EXPORT_MALFORMED';
  if (vkeys.length === 0) return { trust, report: failureReport({ code, message: 'the log publishes no checkpoint verifier key' }) };
  warnTrustOnFirstUse(opts, vkeys);
  try {
    return { trust, vkeys, verifiers: toNoteVerifiers(vkeys) };
  } catch (e) {
    return { trust, report: failureReport({ code, message: `the log publishes a malformed verifier key: ${errorMessage(e)}` }) };
  }
}

/** The `--witness` policy, or undefined without `--witness`. */
function witnessOptions(opts: Opts): WitnessPolicy | undefined {
  if (opts.witness === undefined) {
    if (opts.witnessQuorum !== undefined || opts.maxAge !== undefined) throw new UsageError('--witness-quorum and --max-age need --witness');
    return undefined;
  }
  try {
    const quorum = opts.witnessQuorum !== undefined ? Number(opts.witnessQuorum) : undefined;
    return witnessPolicy(opts.witness, quorum, opts.maxAge !== undefined ? parseDuration(opts.maxAge) : DEFAULT_MAX_AGE_SECONDS);
  } catch (e) {
    throw new UsageError(`bad witness option: ${errorMessage(e)}`);
  }
}

async function run(opts: Opts): Promise<number> {
  const live = opts.url !== undefined;
  const sources = [opts.url, opts.file, opts.tilesDir].filter((x) => x !== undefined).length;
  if (sources !== 1) throw new UsageError('give exactly one of --url, --file or --tiles-dir');
  if (opts.tiles && !live) throw new UsageError('--tiles needs --url (for a static copy use --tiles-dir)');
  if (opts.tilesDir !== undefined && opts.trustServerKey) throw new UsageError('--tiles-dir needs --log-key or a --state file with pinned keys');
  const witnesses = witnessOptions(opts);
  if (live && (!opts.cacert || !opts.cert || !opts.key)) throw new UsageError('--url needs --cacert, --cert and --key');

  let state: VerifierState | undefined;
  if (opts.state !== undefined && existsSync(opts.state)) {
    try {
      state = parseState(readFileSync(opts.state, 'utf8'));
    } catch (e) {
      throw new UsageError(`cannot use state file: ${errorMessage(e)}`);
    }
  }

  let client: LogClient | undefined;
  try {
    if (live) client = LogClient.fromFiles(opts.url as string, opts.cacert as string, opts.cert as string, opts.key as string);
  } catch (e) {
    throw new UsageError(`cannot read TLS files: ${errorMessage(e)}`);
  }

  try {
    const trusted = await resolveTrust(opts, state, client);
    if ('report' in trusted) return emit(opts, trusted.report, trusted.trust, [], false);
    const { trust, vkeys, verifiers } = trusted;

    const bar = progressBar(!opts.json && process.stderr.isTTY === true);
    let report: VerifyReport;
    try {
      const common = { verifiers, ...(state ? { state } : {}), ...(witnesses ? { witnesses } : {}), onProgress: (n: number, t: number) => bar.update(n, t) };
      if (opts.tilesDir !== undefined || opts.tiles) {
        const source =
          opts.tilesDir !== undefined
            ? directoryTileSource(opts.tilesDir)
            : httpsTileSource({ url: opts.url as string, ca: readFileSync(opts.cacert as string), cert: readFileSync(opts.cert as string), key: readFileSync(opts.key as string) });
        try {
          report = await verifyTiledLog(source, common);
        } finally {
          source.close();
        }
      } else {
        report = client ? await verifyRemoteLog(client, common) : await verifyExportFile(opts.file as string, common);
      }
    } finally {
      bar.stop();
    }

    let stateSaved = false;
    if (report.ok && report.newState && opts.state !== undefined) {
      // Pins the keys this run trusted (for server-key trust: the keys fetched on first use).
      saveStateAtomically(opts.state, { ...report.newState, keys: vkeys });
      stateSaved = true;
    }
    return emit(opts, report, trust, vkeys, stateSaved);
  } finally {
    client?.close();
  }
}

/** Runs the CLI; every error becomes one line on stderr (never a stack trace) and an exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return await run(program.opts<Opts>());
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE; // commander printed it
    if (e instanceof LogClientError) {
      process.stderr.write(`verify-log: cannot reach the log: ${e.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`verify-log: ${errorMessage(e)}\n`);
    return EXIT_USAGE;
  }
}

/** Last resort for anything thrown outside `main` (e.g. an unhandled stream error): one line, exit 2. */
function fatal(e: unknown): void {
  process.stderr.write(`verify-log: internal error: ${errorMessage(e)}\n`);
  process.exit(EXIT_USAGE);
}
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);

process.exitCode = await main(process.argv);
