import { afterEach } from 'vitest';
import { spawnCli, waitForOutput } from './cli.ts';

export type Server = ReturnType<typeof spawnCli> & { url: string };

/**
 * `switchyard serve` processes for a test file: `start` runs one on a free port and resolves once it
 * listens; `track` takes one started otherwise. Call at the file's top level: each test's servers are
 * killed after it, so a failed test leaves none running.
 */
export function useServers(): { start: (args: string[], env: Record<string, string>) => Promise<Server>; track: (server: Server) => void } {
  const running: Server[] = [];
  afterEach(async () => {
    for (const server of running.splice(0)) {
      if (server.exitCode === null) server.kill('SIGKILL');
      await server.done;
    }
  });
  return {
    async start(args, env) {
      const child = spawnCli(['serve', '--port', '0', ...args], env);
      await waitForOutput(() => child.output().stdout, 'listening on', 20_000);
      const url = /listening on (http:\/\/\S+) /.exec(child.output().stdout)?.[1];
      if (!url) throw new Error(`no URL in: ${child.output().stdout}`);
      const server = Object.assign(child, { url });
      running.push(server);
      return server;
    },
    track: (server) => running.push(server),
  };
}
