/**
 * Certificate tooling for paylog principals (`npm run issue-cert -- <command> ...`).
 *
 *   csr   processor side: make an RSA key (never leaves the machine) and a PKCS#10 CSR
 *   sign  paylog operator side: sign a CSR with the paylog CA for an operator-chosen identity
 *   issue paylog operator side: make key + certificate in one step (internal principals)
 *
 * Exit codes: 0 success, 1 the operation failed (e.g. CSR refused), 2 usage errors.
 */
import { constants as fsConstants } from 'node:fs';
import { access, chmod, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { isPaylogError } from '../src/errors.js';
import {
  certificateInfo,
  createCsr,
  DEFAULT_LEAF_VALIDITY_DAYS,
  issuePrincipalCertificate,
  MAX_VALIDITY_DAYS,
  signCsr,
  type CaMaterial,
} from '../src/pki/ca.js';
import { PRINCIPAL_NAME_PATTERN, ROLES, type PrincipalIdentity, type Role } from '../src/pki/identity.js';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;
const DEFAULT_CA_DIR = join(process.env.PAYLOG_DATA_DIR ?? 'data', 'pki');

/** An error in how the script was called (exit 2). */
class UsageError extends Error {}

function parseName(value: string): string {
  if (!PRINCIPAL_NAME_PATTERN.test(value)) {
    throw new InvalidArgumentError(
      'must be lowercase letters, digits and "-", starting with a letter or digit, at most 63 characters.',
    );
  }
  return value;
}

function parseDays(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isInteger(n) || n < 1 || n > MAX_VALIDITY_DAYS) {
    throw new InvalidArgumentError(`must be a whole number of days between 1 and ${MAX_VALIDITY_DAYS}.`);
  }
  return n;
}

function roleOption(defaultRole?: Role): Option {
  const opt = new Option('--role <role>', 'principal role').choices(ROLES);
  return defaultRole ? opt.default(defaultRole) : opt.makeOptionMandatory();
}

async function readInput(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`${what} not found: ${path}`);
    throw new Error(`cannot read ${what} ${path}: ${code ?? String(e)}`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Writes `data` with `mode`; refuses to replace an existing file unless `force`. */
async function writeOutput(path: string, data: string, mode: number, force: boolean): Promise<void> {
  if (!force && (await exists(path))) {
    throw new UsageError(`${path} already exists (use --force to overwrite)`);
  }
  await writeFile(path, data, { mode, flag: force ? 'w' : 'wx' });
  await chmod(path, mode);
}

async function loadCa(caDir: string): Promise<CaMaterial> {
  const certPem = await readInput(join(caDir, 'ca.pem'), 'CA certificate');
  const keyPem = await readInput(join(caDir, 'ca-key.pem'), 'CA private key');
  return { certPem, keyPem };
}

function printIssued(identity: PrincipalIdentity, certPem: string, outPath: string): void {
  const info = certificateInfo(certPem);
  const lines = [
    `issued certificate for ${identity.role} "${identity.name}"`,
    `  serial:      ${info.serialHex}`,
    `  fingerprint: ${info.fingerprint}`,
    `  not after:   ${info.notAfter.toISOString()}`,
    `  written to:  ${resolve(outPath)}`,
  ];
  if (identity.role === 'processor') {
    lines.push(
      `next step: register processor "${identity.name}" as an admin (this script does not): PUT /v1/admin/processors/${identity.name} with {"status":"active"} —`,
      `any certificate the paylog CA issues for this processor name is then accepted. Then send ${outPath} and the CA certificate (ca.pem) to the processor.`,
    );
  } else {
    lines.push(`next step: hand ${outPath} (and ca.pem) to the ${identity.role} principal "${identity.name}".`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

interface CsrOptions { name: string; role: Role; keyOut: string; csrOut: string; keyIn?: string; force: boolean }
interface SignOptions { csr: string; role: Role; name: string; caDir: string; out: string; days: number; force: boolean }
interface IssueOptions { role: Role; name: string; caDir: string; certOut: string; keyOut: string; days: number; force: boolean }

async function runCsr(o: CsrOptions): Promise<void> {
  const identity: PrincipalIdentity = { role: o.role, name: o.name };
  const existingKey = o.keyIn ? await readInput(o.keyIn, 'private key') : undefined;
  const { csrPem, keyPem } = createCsr(identity, existingKey);
  if (!o.keyIn) await writeOutput(o.keyOut, keyPem, KEY_MODE, o.force);
  await writeOutput(o.csrOut, csrPem, CERT_MODE, o.force);
  process.stdout.write(
    [
      `CSR for ${identity.role} "${identity.name}" written to ${resolve(o.csrOut)}`,
      o.keyIn ? `  using existing key ${resolve(o.keyIn)}` : `  private key written to ${resolve(o.keyOut)} (mode 0600 — keep it secret, never send it)`,
      `next step: send ${o.csrOut} to the paylog operator, who runs \`npm run issue-cert -- sign ...\`.`,
      '',
    ].join('\n'),
  );
}

async function runSign(o: SignOptions): Promise<void> {
  const identity: PrincipalIdentity = { role: o.role, name: o.name };
  const csrPem = await readInput(o.csr, 'CSR');
  const ca = await loadCa(o.caDir);
  if (!o.force && (await exists(o.out))) throw new UsageError(`${o.out} already exists (use --force to overwrite)`);
  const issued = signCsr(ca, csrPem, identity, { validityDays: o.days });
  await writeOutput(o.out, issued.certPem, CERT_MODE, o.force);
  printIssued(identity, issued.certPem, o.out);
}

async function runIssue(o: IssueOptions): Promise<void> {
  const identity: PrincipalIdentity = { role: o.role, name: o.name };
  const ca = await loadCa(o.caDir);
  for (const p of [o.certOut, o.keyOut]) {
    if (!o.force && (await exists(p))) throw new UsageError(`${p} already exists (use --force to overwrite)`);
  }
  const issued = issuePrincipalCertificate(ca, identity, { validityDays: o.days });
  await writeOutput(o.keyOut, issued.keyPem, KEY_MODE, o.force);
  await writeOutput(o.certOut, issued.certPem, CERT_MODE, o.force);
  printIssued(identity, issued.certPem, o.certOut);
}

function buildProgram(): Command {
  const program = new Command('issue-cert')
    .description('Issue paylog client certificates (CSR on the processor side, signing on the operator side).')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('csr')
    .description('processor side: create a private key and a certificate signing request')
    .requiredOption('--name <name>', 'principal name (the processor name for processors)', parseName)
    .addOption(roleOption('processor'))
    .requiredOption('--key-out <file>', 'where to write the new private key (mode 0600)')
    .requiredOption('--csr-out <file>', 'where to write the CSR (PEM)')
    .option('--key-in <file>', 'use this existing RSA private key instead of generating one')
    .option('--force', 'overwrite existing output files', false)
    .action((o: CsrOptions) => runCsr(o));

  program
    .command('sign')
    .description('paylog operator side: sign a CSR with the paylog CA for the given identity')
    .requiredOption('--csr <file>', 'the CSR received from the principal')
    .addOption(roleOption())
    .requiredOption('--name <name>', 'principal name (the processor name for processors)', parseName)
    .option('--ca-dir <dir>', 'directory holding ca.pem and ca-key.pem', DEFAULT_CA_DIR)
    .requiredOption('--out <file>', 'where to write the certificate (PEM)')
    .option('--days <n>', 'validity in days', parseDays, DEFAULT_LEAF_VALIDITY_DAYS)
    .option('--force', 'overwrite an existing output file', false)
    .action((o: SignOptions) => runSign(o));

  program
    .command('issue')
    .description('paylog operator side: create key and certificate in one step (internal principals)')
    .addOption(roleOption())
    .requiredOption('--name <name>', 'principal name', parseName)
    .option('--ca-dir <dir>', 'directory holding ca.pem and ca-key.pem', DEFAULT_CA_DIR)
    .requiredOption('--cert-out <file>', 'where to write the certificate (PEM)')
    .requiredOption('--key-out <file>', 'where to write the private key (mode 0600)')
    .option('--days <n>', 'validity in days', parseDays, DEFAULT_LEAF_VALIDITY_DAYS)
    .option('--force', 'overwrite existing output files', false)
    .action((o: IssueOptions) => runIssue(o));

  return program;
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_USAGE; // commander already printed why
    if (e instanceof UsageError) {
      process.stderr.write(`issue-cert: ${e.message}\n`);
      return EXIT_USAGE;
    }
    if (isPaylogError(e)) {
      process.stderr.write(`issue-cert: ${e.message} [${e.code}]\n`);
      return EXIT_FAILURE;
    }
    process.stderr.write(`issue-cert: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT_FAILURE;
  }
}

process.exitCode = await main(process.argv);
