import packageJson from '../package.json' with { type: 'json' };

/**
 * Imported first by the CLI, so an old Node.js stops with what to do instead of a SyntaxError from
 * some later module (Node 20 cannot even link `enableCompileCache`). Written for any Node version.
 */
const minimum = packageJson.engines.node.replace(/^>=\s*/, '');
const [wantMajor = 0, wantMinor = 0] = minimum.split('.').map(Number);
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < wantMajor || (major === wantMajor && minor < wantMinor)) {
  process.stderr.write(`switchyard: needs Node.js ${minimum} or newer, and this is ${process.version}. Install Node.js 24 (https://nodejs.org, or \`nvm install 24\`) and run the command again.\n`);
  process.exit(2);
}
