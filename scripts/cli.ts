/**
 * What the command-line scripts share: exit codes, the auditor's mTLS options and commander
 * parsing that returns an exit code instead of exiting (so `main(argv)` stays testable).
 */
import { CommanderError, type Command } from 'commander';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface TlsClientOpts {
  url: string;
  cacert: string;
  cert: string;
  key: string;
}

/** `--url --cacert --cert --key` (all required): the service and an auditor's client certificate. */
export function withAuditorTls(program: Command): Command {
  return program
    .requiredOption('--url <url>', 'paylog base URL')
    .requiredOption('--cacert <file>', 'CA certificate (PEM)')
    .requiredOption('--cert <file>', 'auditor client certificate (PEM)')
    .requiredOption('--key <file>', 'auditor client private key (PEM)');
}

/**
 * Parses `argv` with a program built with `.exitOverride()`: the options, or the exit code
 * commander's own output stands for (0 after --help, EXIT_USAGE after a usage error).
 */
export async function parseOptions<T>(program: Command, argv: string[]): Promise<{ opts: T } | { exitCode: number }> {
  try {
    await program.parseAsync(argv);
    return { opts: program.opts<T & Record<string, unknown>>() };
  } catch (e) {
    if (e instanceof CommanderError) return { exitCode: e.exitCode === 0 ? EXIT_OK : EXIT_USAGE };
    throw e;
  }
}
