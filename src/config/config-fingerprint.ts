import { createHash } from 'node:crypto';
import { urlWithoutPassword } from '../models/url-without-password.ts';
import { withSortedKeys } from '../sorted-keys.ts';
import type { SwitchyardConfig } from './schema.ts';

/**
 * A short hash of a config, to tell whether two servers run with the same one: its providers,
 * models, limits and prices, with keys in a fixed order (two files that say the same in another
 * order are one config) and without secrets (a base_url's password is left out; API keys are never
 * in a config, only the names of their variables). The built-in models' simulator listens on a port
 * of its own each time, so its address is left out too: every built-in config is the same.
 */
export function configFingerprint(config: SwitchyardConfig, builtIn: boolean): string {
  const providers = Object.fromEntries(
    Object.entries(config.providers).map(([name, provider]) => [name, { ...provider, base_url: builtIn ? '(the built-in simulator)' : urlWithoutPassword(provider.base_url) }]),
  );
  return createHash('sha256').update(JSON.stringify(withSortedKeys({ ...config, providers }))).digest('hex').slice(0, 12);
}

