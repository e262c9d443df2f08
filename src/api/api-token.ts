import { UsageError } from '../errors.ts';
import { isLoopback } from '../listen-address.ts';

/** Where `serve` reads its API token: the environment only, so that it stays out of `ps` and shell history. */
export const API_TOKEN_ENV = 'SWITCHYARD_API_TOKEN';

/**
 * The token every request but `GET /healthz` must carry (null: none). A server that listens
 * beyond this machine without one is refused unless `--no-auth` (`auth` false) says the network
 * is trusted: a warning alone let anyone on the network run batches on the operator's keys (QA).
 */
export function apiToken(env: NodeJS.ProcessEnv, host: string, auth: boolean): string | null {
  const given = env[API_TOKEN_ENV];
  const token = given?.trim() || null;
  if (token !== null && !auth) {
    throw new UsageError(`--no-auth was given and ${API_TOKEN_ENV} is set: unset ${API_TOKEN_ENV} to serve without a token, or drop --no-auth to require it`);
  }
  if (token === null && auth && !isLoopback(host)) {
    const none = given === undefined ? `no ${API_TOKEN_ENV} is set` : `${API_TOKEN_ENV} is empty`;
    throw new UsageError(
      `--host ${host} listens beyond this machine and ${none}: anyone who can reach the server could run batches on your models' keys, spending money, and read every batch's files. ` +
        `Set ${API_TOKEN_ENV} in the server's environment to a long random secret (e.g. export ${API_TOKEN_ENV}=$(openssl rand -hex 32)); clients send it as "Authorization: Bearer <token>". ` +
        'Or, on a network you trust, give --no-auth to serve without a token.',
    );
  }
  return token;
}
