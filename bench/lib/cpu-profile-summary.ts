/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by where the
 * code lives (a package in node_modules, node internals, the project's own folders).
 * Usage: node bench/lib/cpu-profile-summary.ts <file.cpuprofile> [top=25]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  byFunction: Array<{ name: string; where: string; ms: number }>;
  byOrigin: Array<{ origin: string; ms: number }>;
  /** Time with the function anywhere on the stack, for the project's own code (src, jobs, workers). */
  ownInclusive: Array<{ name: string; where: string; ms: number }>;
}

/** Project code, also inside a bench/.tmp/snapshot-* copy. */
const OWN = /^(?:.*\/)?(src|jobs|workers|bench)\/(.+)$/;

function ownPath(url: string): string | null {
  if (url.includes('node_modules/')) return null;
  const match = OWN.exec(url.replace(/^.*\/bench\/\.tmp\/snapshot-[^/]+\//, '/'));
  return match ? `${match[1]}/${match[2]}` : null;
}

function origin(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm?.[1]) return nm[1];
  if (url.startsWith('node:')) return 'node: internals';
  const own = ownPath(url);
  if (own) return own.startsWith('src/') ? own.split('/').slice(0, 2).join('/') : (own.split('/')[0] ?? own);
  return url;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  return ownPath(url) ?? url;
}

export function summariseProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  // Each sample's time is the delta to the next sample (V8 convention: timeDeltas[i] precedes samples[i]).
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    const delta = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  }
  const fnMs = new Map<string, { name: string; where: string; ms: number }>();
  const originMs = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    const entry = fnMs.get(key) ?? { name, where, ms: 0 };
    entry.ms += us / 1000;
    fnMs.set(key, entry);
    const o = origin(url, name);
    originMs.set(o, (originMs.get(o) ?? 0) + us / 1000);
    total += us / 1000;
  }
  // Inclusive time of the project's functions: each sample counts once for every distinct one on its stack.
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const inclusive = new Map<string, { name: string; where: string; ms: number }>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame || ownPath(frame.url) === null) continue;
      const name = frame.functionName || '(anonymous)';
      const where = `${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
      const key = `${name} ${where}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const entry = inclusive.get(key) ?? { name, where, ms: 0 };
      entry.ms += us / 1000;
      inclusive.set(key, entry);
    }
  }
  return {
    ownInclusive: [...inclusive.values()].sort((a, b) => b.ms - a.ms).slice(0, top),
    totalMs: total,
    byFunction: [...fnMs.values()].sort((a, b) => b.ms - a.ms).slice(0, top),
    byOrigin: [...originMs.entries()].map(([o, ms]) => ({ origin: o, ms })).sort((a, b) => b.ms - a.ms).slice(0, top),
  };
}

export function printProfileSummary(summary: ProfileSummary, log: (line: string) => void = console.log): void {
  const pct = (ms: number) => `${((ms / summary.totalMs) * 100).toFixed(1).padStart(5)}%`;
  log(`  profile: ${summary.totalMs.toFixed(0)} ms sampled`);
  log('  self time by origin:');
  for (const { origin: o, ms } of summary.byOrigin) log(`    ${pct(ms)} ${ms.toFixed(0).padStart(7)} ms  ${o}`);
  log('  top functions by self time:');
  for (const { name, where, ms } of summary.byFunction) log(`    ${pct(ms)} ${ms.toFixed(0).padStart(7)} ms  ${name}  ${where}`);
  log("  the project's own functions by inclusive time (callees included):");
  for (const { name, where, ms } of summary.ownInclusive) log(`    ${pct(ms)} ${ms.toFixed(0).padStart(7)} ms  ${name}  ${where}`);
}

/** Self time of the functions named `name`, split by their nearest `depth` callers outside Node's internals. */
function callersOf(file: string, name: string, depth = 4, top = 10): Array<{ stack: string; ms: number }> {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const stacks = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    if (byId.get(id)?.callFrame.functionName !== name) continue;
    const frames: string[] = [];
    for (let at = parent.get(id); at !== undefined && frames.length < depth; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame && frame.url !== '' && !frame.url.startsWith('node:')) frames.push(`${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`);
    }
    const key = frames.join(' < ');
    stacks.set(key, (stacks.get(key) ?? 0) + (profile.timeDeltas[i + 1] ?? 0) / 1000);
  }
  return [...stacks.entries()].map(([stack, ms]) => ({ stack, ms })).sort((a, b) => b.ms - a.ms).slice(0, top);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, second, third] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node bench/lib/cpu-profile-summary.ts <file.cpuprofile> [top=25]');
    console.error('       node bench/lib/cpu-profile-summary.ts <file.cpuprofile> --callers <functionName>');
    process.exit(2);
  }
  if (second === '--callers' && third) {
    for (const { stack, ms } of callersOf(file, third)) console.log(`${ms.toFixed(0).padStart(7)} ms  ${third} < ${stack}`);
  } else {
    printProfileSummary(summariseProfile(file, Number(second ?? 25)));
  }
}
