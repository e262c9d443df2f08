/**
 * A private `redis-server` child process: for tests, and for `ensureRedis` on a machine that has
 * the binary but no running Redis. Started with command-line arguments only (no config file),
 * bound to 127.0.0.1, stopped with SHUTDOWN (SIGTERM, then SIGKILL, as fallbacks).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import path from 'node:path';
import { SetupError } from '../errors.ts';

export interface RedisServerOptions {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** Working directory for the server's data (created if missing). */
  dir: string;
  /** true: append-only file, kept across restarts in `dir`; false: nothing written to disk. */
  persist: boolean;
  /** Where the server's output goes; without it the last few KiB are kept in memory for errors. */
  logFile?: string;
  /** The binary; default `findRedisServerBinary()`. */
  binary?: string;
}

export interface RedisServerHandle {
  url: string;
  port: number;
  pid: number;
  /** Shuts the server down (saving first when persisting) and waits for the process to exit. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const TAIL_BYTES = 4096;
/** How long a started server has to answer its first PING. */
const START_TIMEOUT_MS = 10_000;

/** The `redis-server` executable on PATH, or null. */
export function findRedisServerBinary(): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** True when nothing listens on 127.0.0.1:port (checked by binding it for a moment). */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/** A port on 127.0.0.1 that was free a moment ago. */
export function pickFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

export async function startRedisServer(options: RedisServerOptions): Promise<RedisServerHandle> {
  const binary = options.binary ?? findRedisServerBinary();
  if (binary === null) {
    throw new SetupError('redis-server was not found on PATH (apt-get install redis-server / brew install redis)');
  }
  mkdirSync(options.dir, { recursive: true });
  // A picked port can be taken before redis-server binds it; then try another.
  const tries = options.port ? 1 : 3;
  for (let attempt = 1; ; attempt++) {
    const port = options.port || (await pickFreePort());
    try {
      return await startOnce(binary, port, options);
    } catch (error) {
      const inUse = error instanceof Error && /address already in use/i.test(error.message);
      if (!inUse || attempt >= tries) throw error;
    }
  }
}

async function startOnce(binary: string, port: number, options: RedisServerOptions): Promise<RedisServerHandle> {
  // Checked first so that a PONG can only come from the server started here.
  if (!(await isPortFree(port))) throw new Error(`cannot start redis-server: 127.0.0.1:${port}: address already in use`);
  const args = [
    '--port', String(port),
    '--bind', HOST,
    '--dir', path.resolve(options.dir),
    '--save', '',
    '--appendonly', options.persist ? 'yes' : 'no',
    '--daemonize', 'no',
  ];
  const output = new OutputTail(options.logFile);
  const child = spawn(binary, args, { stdio: ['ignore', output.stdio, output.stdio] });
  output.attach(child);
  const exited = new Promise<string>((resolve) => {
    child.once('close', (code, signal) => resolve(`exited with ${signal ?? `code ${code}`}`));
    child.once('error', (error) => resolve(`failed to start: ${error.message}`));
  });
  output.closeParentCopy();

  const deadline = Date.now() + START_TIMEOUT_MS;
  let exitReason: string | null = null;
  void exited.then((reason) => (exitReason = reason));
  while (!isDone(exitReason)) {
    const answered = await sendCommand(port, ['PING'], 500).then((reply) => reply === '+PONG', () => false);
    if (answered) {
      // Bound to this process: a parent that exits without stop() still takes the server down (SIGTERM saves).
      const killOnExit = () => child.kill('SIGTERM');
      process.once('exit', killOnExit);
      const stop = async () => {
        await stopServer(child, port, options.persist, exited);
        process.removeListener('exit', killOnExit);
      };
      return { url: `redis://${HOST}:${port}`, port, pid: child.pid!, stop };
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await settlesWithin(exited, 1000);
      exitReason = `did not answer PING within ${START_TIMEOUT_MS} ms`;
      break;
    }
    await sleep(50);
  }
  throw new Error(`redis-server on port ${port} (dir ${options.dir}) ${exitReason ?? 'stopped'}. Its last output:\n${output.tail()}`);
}

/** Read through a function so TypeScript does not narrow away the assignment made in a callback. */
function isDone(reason: string | null): boolean {
  return reason !== null;
}

async function stopServer(child: ChildProcess, port: number, persist: boolean, exited: Promise<string>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await sendCommand(port, ['SHUTDOWN', persist ? 'SAVE' : 'NOSAVE'], 5000).catch(() => undefined);
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    if (await settlesWithin(exited, 5000)) return;
    child.kill(signal);
  }
  await exited;
}

/** Sends one command over a fresh connection; resolves with the first reply line ('' if the server closed). */
function sendCommand(port: number, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: HOST, port });
    let received = '';
    const finish = (fn: () => void) => {
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const timer = setTimeout(() => finish(() => reject(new Error('timed out'))), timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (chunk: string) => {
      received += chunk;
      const end = received.indexOf('\r\n');
      if (end >= 0) finish(() => resolve(received.slice(0, end)));
    });
    socket.once('error', (error) => finish(() => reject(error)));
    socket.once('close', () => finish(() => resolve(received)));
  });
}

/** The server's stdout/stderr: appended to a log file, or kept (last few KiB) in memory. */
class OutputTail {
  private readonly logFile: string | undefined;
  private readonly fd: number | undefined;
  private buffer = '';

  constructor(logFile: string | undefined) {
    this.logFile = logFile;
    if (logFile !== undefined) {
      mkdirSync(path.dirname(logFile), { recursive: true });
      this.fd = openSync(logFile, 'a');
    }
  }

  get stdio(): 'pipe' | number {
    return this.fd ?? 'pipe';
  }

  attach(child: ChildProcess): void {
    const keep = (chunk: Buffer) => {
      this.buffer = (this.buffer + chunk.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  /** The child has its own copy of the log file descriptor once spawned. */
  closeParentCopy(): void {
    if (this.fd !== undefined) closeSync(this.fd);
  }

  tail(): string {
    if (this.logFile === undefined) return this.buffer.trimEnd() || '(no output)';
    try {
      return readFileSync(this.logFile, 'utf8').slice(-TAIL_BYTES).trimEnd() || '(no output)';
    } catch {
      return `(could not read ${this.logFile})`;
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True if `promise` settles within `ms`; leaves no timer behind. */
function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    promise.then(done, done);
  });
}
