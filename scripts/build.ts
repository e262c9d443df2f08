/**
 * `npm run build` (and `prepare`): bundles with rolldown.config.ts through rolldown's API, so that
 * a build says one line instead of the rolldown CLI's table of every chunk and source map (which
 * pushed the demo's own output off the screen). Errors still print in full, with a non-zero exit.
 */
import { build } from 'rolldown';
import config from '../rolldown.config.ts';

const started = performance.now();
const output = await build(config);
const chunks = output.output.filter((file) => file.type === 'chunk');
const bytes = chunks.reduce((sum, chunk) => sum + Buffer.byteLength(chunk.code), 0);
console.log(`Built dist/ (${chunks.length} chunks, ${(bytes / 1e6).toFixed(1)} MB) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
