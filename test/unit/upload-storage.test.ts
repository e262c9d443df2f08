import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { saveUpload, storageTrouble } from '../../src/api/upload.ts';

describe("the server's own disk trouble with an upload", () => {
  it('is a 507 naming the file, not the client\'s upload to send again (QA: a full disk answered 400 upload_failed)', () => {
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', path: '/srv/out/b1/input.csv.part' });
    expect(storageTrouble(full)).toMatchObject({
      status: 507,
      code: 'storage_trouble',
      message: "the server could not store this batch's files (/srv/out/b1/input.csv.part): the disk is full [ENOSPC]; send the request again once the server's operator has fixed that",
    });
    expect(storageTrouble(new Error('socket hang up'))).toBeNull();
  });

  it('leaves no part file behind when the body breaks off', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sy-upload-'));
    const body = new Readable({
      read() {
        this.push('prompt\nfirst\n');
        this.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
      },
    });
    await expect(saveUpload(body, join(dir, 'input.csv'), 1024 * 1024)).rejects.toMatchObject({ status: 400, code: 'upload_failed' });
    expect(await readdir(dir)).toEqual([]);
  });
});
