// Runs before npm installs or builds anything, on whatever Node.js the user has: an old one gets
// one line saying what to install, instead of a stack trace from the TypeScript build script.
import { readFileSync } from 'node:fs';

const minimum = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).engines.node.replace(/^>=\s*/, '');
const [wantMajor = 0, wantMinor = 0] = minimum.split('.').map(Number);
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < wantMajor || (major === wantMajor && minor < wantMinor)) {
  console.error(`Switchyard needs Node.js ${minimum} or newer, and this is ${process.version}. Install Node.js 24 (https://nodejs.org, or \`nvm install 24\`), then run the npm command again.`);
  process.exit(1);
}
