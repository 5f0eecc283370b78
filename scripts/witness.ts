/**
 * A C2SP tlog-witness for paylog logs, for a third party (auditor, partner) to run.
 *
 *   npm run witness -- --listen HOST:PORT --data DIR --name NAME --log-vkey VKEY [--log-vkey VKEY ...]
 *
 * Serves `POST /add-checkpoint` over plain HTTP (loopback, or behind the operator's TLS
 * terminator). On first start makes an Ed25519 key in DIR; writes the witness's verifier key
 * (tlog-cosignature type 0x04) to DIR/vkey and prints it — give it to the log operator
 * (PAYLOG_WITNESSES) and to auditors (verify-log --witness). Runs until SIGINT/SIGTERM.
 *
 * Exit codes: 2 for usage errors or when it cannot listen.
 */
import { Command, CommanderError, Option } from 'commander';
import { startWitness } from '../src/log/witness/witness.js';

interface Opts {
  listen: string;
  data: string;
  name: string;
  logVkey: string[];
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
    .exitOverride();
  let opts: Opts;
  try {
    await program.parseAsync(argv);
    opts = program.opts<Opts>();
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  const m = /^(\[[^\]]+\]|[^:]+):([0-9]{1,5})$/.exec(opts.listen);
  if (m === null) {
    process.stderr.write('witness: --listen must be HOST:PORT\n');
    return 2;
  }
  const host = (m[1] as string).replace(/^\[|\]$/g, '');
  try {
    const w = await startWitness({ host, port: Number(m[2]), dataDir: opts.data, name: opts.name, logVkeys: opts.logVkey });
    process.stdout.write(`witness ${opts.name} listening on ${w.url}\nvkey ${w.witness.vkey}\n`);
    const stop = () => void w.close().then(() => process.exit(0));
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    return undefined;
  } catch (e) {
    process.stderr.write(`witness: ${(e as Error).message}\n`);
    return 2;
  }
}

const code = await main(process.argv);
if (code !== undefined) process.exitCode = code;
