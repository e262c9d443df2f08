import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

describe('switchyard forget', () => {
  const h = useSimulatorAndRedis('forget', { latency_ms: 1 });
  const keysOf = async (batchId: string) => (await h.redis.keys(`${h.prefix}:batch:{${batchId}}*`)).sort();

  it('deletes a finished batch from Redis but not its files, refuses an unfinished one, and picks old batches by age', async () => {
    const dir = await tempDir('forget');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 5);
    for (const id of ['old', 'recent']) {
      const run = await runCli(['run', input, '--config', config, '--out', join(dir, id), '--batch-id', id, '--budget', '5'], h.env());
      expect(run.code, run.stderr).toBe(0);
    }
    const detached = await runCli(['run', input, '--config', config, '--out', join(dir, 'queued'), '--batch-id', 'queued', '--detach'], h.env());
    expect(detached.code, detached.stderr).toBe(0);
    expect(await keysOf('old')).toEqual(expect.arrayContaining([`${h.prefix}:batch:{old}`, `${h.prefix}:batch:{old}:fingerprints`, `${h.prefix}:batch:{old}:budget`]));

    const refused = await runCli(['forget', 'queued', 'nope'], h.env());
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain('Kept queued: queued is not finished (running): workers run its rows, and `switchyard collect queued` writes its outputs; then it can be forgotten.');
    expect(refused.stdout).toContain('No batch "nope" here: nothing to forget (`switchyard status` lists the batches).');
    expect((await keysOf('queued')).length).toBeGreaterThan(0);
    // One whose file stopped part-way is not finished by a resume of the file as it is: status says what to do.
    await h.redis.hset(`${h.prefix}:batch:{queued}`, 'input_error', 'the quoted field at line 4 is never closed');
    expect((await runCli(['forget', 'queued'], h.env())).stdout).toContain('Kept queued: queued is not finished (running): its file could not be read to its end, and `switchyard status queued` says how to finish it; then it can be forgotten.');
    await h.redis.hdel(`${h.prefix}:batch:{queued}`, 'input_error');

    // "old" ended two days ago; "recent" just now.
    await h.redis.hset(`${h.prefix}:batch:{old}`, 'finished_at', new Date(Date.now() - 2 * 86_400_000).toISOString());
    const byAge = await runCli(['forget', '--older-than', '1'], h.env());
    expect(byAge.code, byAge.stderr).toBe(0);
    expect(byAge.stdout.trim().split('\n')).toEqual([expect.stringMatching(/^Forgot old \(\d+ Redis keys\); its output files are kept\.$/)]);
    expect(await keysOf('old')).toEqual([]);
    expect(existsSync(join(dir, 'old', 'results.jsonl'))).toBe(true);
    expect((await runCli(['forget', '--older-than', '0.5'], h.env())).stdout).toBe('No finished batch ended more than 0.5 days ago.\n');

    // A lease left by a live process keeps the batch; one left by a process on this machine that died does not.
    const lease = `${h.prefix}:batch:{recent}:lease`;
    await h.redis.set(lease, `${hostname()} pid ${process.pid} live01`, 'PX', 60_000);
    const busy = await runCli(['forget', 'recent'], h.env());
    expect(busy.stdout).toContain(`Kept recent: recent is being run by a process right now (${hostname()} pid ${process.pid}).`);
    await h.redis.set(lease, `${hostname()} pid 2147483646 dead01`, 'PX', 60_000);
    const byId = await runCli(['forget', 'recent'], h.env());
    expect(byId.code, byId.stderr).toBe(0);
    expect(await keysOf('recent')).toEqual([]);
    const everyFinished = await runCli(['forget', '--older-than', '0'], h.env());
    // The unfinished one is kept, but named: timed-out nights would otherwise pile up in Redis unseen.
    expect([everyFinished.code, everyFinished.stdout]).toEqual([
      0,
      'Kept 1 unfinished batch started more than 0 days ago (queued): `switchyard status <id>` says how to finish each; then it can be forgotten.\nNo finished batch ended more than 0 days ago.\n',
    ]);
    const list = await runCli(['status'], h.env());
    expect(list.stdout).toContain('queued');
    expect(list.stdout).not.toMatch(/\brecent\b|\bold\b/);
    const gone = await runCli(['run', '--resume', 'recent'], h.env());
    expect(gone.code).toBe(2);

    expect((await runCli(['forget'], h.env())).stderr).toContain('name the batches to forget, or give --older-than <days>');
  });

  it("names a batch whose keys were deleted under it, says what to do, and lets forget clear what is left", async () => {
    // What a worker's publish leaves after the batch's keys were deleted (or evicted) mid-run: a hash with only the running cost.
    await h.redis.hset(`${h.prefix}:batch:{gutted}`, 'cost_nanos', '5000');
    await h.redis.zadd(`${h.prefix}:batches`, Date.now(), 'gutted');
    const status = await runCli(['status', 'gutted'], h.env());
    expect(status.code).toBe(3);
    expect(status.stderr).toContain('batch gutted: its record in Redis is incomplete (');
    expect(status.stderr).toContain('persistence on, maxmemory-policy noeviction, and no deleting the keys of a batch in use');
    expect(status.stderr).not.toContain('ZodError');
    const listed = await runCli(['status'], h.env());
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('Left out, their records in Redis damaged (`switchyard status <id>` says more): gutted');
    const forgot = await runCli(['forget', 'gutted'], h.env());
    expect(forgot.code, forgot.stderr).toBe(0);
    expect(await keysOf('gutted')).toEqual([]);
  });
});
