/**
 * A C2SP tlog-witness for paylog logs, for a third party (auditor, partner) to run.
 *
 *   npm run witness -- --listen HOST:PORT --data DIR --name NAME --log-vkey VKEY [--log-vkey VKEY ...]
 *                      [--tls-cert FILE --tls-key FILE]
 *
 * Serves `POST /add-checkpoint` over HTTPS with --tls-cert/--tls-key, else over plain HTTP
 * (loopback, or behind the operator's TLS terminator). Locks DIR (`DIR/witness.lock`): a second
 * process on the same DIR refuses to start, naming the holder's pid; a lock left by a dead
 * process is taken over. On first start makes an Ed25519 key in DIR; writes the witness's verifier key
 * (tlog-cosignature type 0x04) to DIR/vkey and prints it — give it to the log operator
 * (PAYLOG_WITNESSES) and to auditors (verify-log --witness). Runs until SIGINT/SIGTERM.
 *
 * Exit codes: 2 for usage errors, when DIR is locked by another witness, or when it cannot listen.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Command, Option } from 'commander';
import { parseOptions } from './cli.js';
import { startWitness } from '../src/log/witness/witness.js';

interface Opts {
  listen: string;
  data: string;
  name: string;
  logVkey: string[];
  tlsCert?: string;
  tlsKey?: string;
}

/** Loopback addresses (plain HTTP is fine there; anywhere else use TLS). */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

async function main(argv: string[]): Promise<number | undefined> {
  const program = new Command('witness')
    .description('Run a C2SP tlog-witness that cosigns consistent checkpoints of the given logs')
    .requiredOption('--listen <host:port>', 'listen address, e.g. 127.0.0.1:7380')
    .requiredOption('--data <dir>', 'key and state directory (one witness process per directory)')
    .requiredOption('--name <name>', 'witness key name, e.g. witness.example.com/w1')
    .addOption(new Option('--log-vkey <vkey>', 'verifier key of a log to witness (repeatable); its name is the log origin').argParser(collect).makeOptionMandatory())
    .option('--tls-cert <file>', 'serve HTTPS with this certificate chain (PEM); with --tls-key')
    .option('--tls-key <file>', 'private key (PEM) for --tls-cert')
    .exitOverride();
  const parsed = await parseOptions<Opts>(program, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const opts = parsed.opts;
  const m = /^(\[[^\]]+\]|[^:]+):([0-9]{1,5})$/.exec(opts.listen);
  if (m === null) {
    process.stderr.write('witness: --listen must be HOST:PORT\n');
    return 2;
  }
  const host = (m[1] as string).replace(/^\[|\]$/g, '');
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) {
    process.stderr.write('witness: --tls-cert and --tls-key go together\n');
    return 2;
  }
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (opts.tlsCert !== undefined && opts.tlsKey !== undefined) {
    try {
      tls = { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) };
    } catch (e) {
      process.stderr.write(`witness: cannot read TLS files: ${(e as Error).message}\n`);
      return 2;
    }
  } else if (!isLoopback(host)) {
    process.stderr.write(`witness: warning: plain HTTP on ${host}, which is not loopback; use --tls-cert/--tls-key or a TLS terminator\n`);
  }
  try {
    const w = await startWitness({ host, port: Number(m[2]), dataDir: opts.data, name: opts.name, logVkeys: opts.logVkey, ...(tls ? { tls } : {}) });
    // Handlers before the announcement: a signal sent as soon as it is read still closes cleanly
    // (and releases DIR/witness.lock).
    const stop = () => void w.close().then(() => process.exit(0));
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.stdout.write(`witness ${opts.name} listening on ${w.url}\nvkey ${w.witness.vkey}\n`);
    return undefined;
  } catch (e) {
    process.stderr.write(`witness: ${(e as Error).message}\n`);
    return 2;
  }
}

const code = await main(process.argv);
if (code !== undefined) process.exitCode = code;
