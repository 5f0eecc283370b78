/**
 * The embedded PostgreSQL server process (./embedded.ts prepares its binaries, OS user and
 * cluster): start-up of the postmaster on a port, recognising a port another program took first,
 * and the one process-wide `exit` listener that asks a still-running server to shut down.
 *
 * Contract: `launchServer` resolves once the server accepts connections, and rejects — leaving no
 * server running — when it exits first (PortTakenError when its port or that port's Unix socket
 * lock was in use) or is not ready within EMBEDDED_START_TIMEOUT_MS.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** How long start-up may take before it is abandoned (initdb excluded). */
const EMBEDDED_START_TIMEOUT_MS = 60_000;
const READY_MESSAGE = 'database system is ready to accept connections';
/** What the server says when its TCP port (or the Unix socket's lock file of that port number) is in use. */
const PORT_TAKEN = /could not bind IPv4 address|Address already in use|could not create lock file "[^"]*\.s\.PGSQL\.\d+\.lock"/;

export class EmbeddedPostgresError extends Error {
  override readonly name = 'EmbeddedPostgresError';
}

/** The server exited at start-up because its port was taken (another program bound it first). */
export class PortTakenError extends EmbeddedPostgresError {}

/** The unprivileged OS user the server runs as when paylog runs as root. */
export interface OsUser {
  readonly uid: number;
  readonly gid: number;
}

const running = new Set<ChildProcess>();
let exitListenerInstalled = false;
/** A server still running when this process exits is asked to shut down fast (SIGINT). */
function installExitListener(): void {
  if (exitListenerInstalled) return;
  exitListenerInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGINT');
  });
}

/** Starts the postmaster on `port` and resolves once it accepts connections (see startEmbeddedPostgres). */
export async function launchServer(
  postgres: string,
  clusterDir: string,
  port: number,
  user: OsUser | undefined,
  env: NodeJS.ProcessEnv,
  detached: boolean,
  onLog: (message: string) => void,
): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  const child = spawn(
    postgres,
    ['-D', clusterDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    { ...(user ?? {}), env, stdio: ['ignore', 'ignore', 'pipe'], detached },
  );
  running.add(child);
  installExitListener();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  void exited.then(() => running.delete(child));

  await new Promise<void>((resolveStart, reject) => {
    let tail = '';
    const timer = setTimeout(() => {
      child.kill('SIGQUIT');
      reject(new EmbeddedPostgresError(`embedded PostgreSQL was not ready within ${EMBEDDED_START_TIMEOUT_MS} ms: ${tail.slice(-2000)}`));
    }, EMBEDDED_START_TIMEOUT_MS);
    child.stderr.on('data', (c: Buffer) => {
      const text = c.toString('utf8');
      onLog(text);
      if (tail.length < 64_000) tail += text;
      if (tail.includes(READY_MESSAGE)) {
        clearTimeout(timer);
        resolveStart();
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const message = `embedded PostgreSQL exited during start-up (exit ${code ?? signal}): ${tail.trim().slice(-2000)}`;
      reject(PORT_TAKEN.test(tail) ? new PortTakenError(message) : new EmbeddedPostgresError(message));
    });
  });

  return { child, exited };
}
