import { describe, expect, it } from 'vitest';
import { addDefaultUser } from './default-user.js';

const now = new Date('2026-01-01T00:00:00Z');
const days = Math.floor(now.getTime() / 86_400_000);

describe('the default user in an image’s account files', () => {
  it('adds user (1000:1000) to passwd, group, shadow and gshadow', () => {
    const { files, user } = addDefaultUser(
      {
        passwd: 'root:x:0:0:root:/root:/bin/sh\n',
        group: 'root:x:0:',
        shadow: 'root:*:19000:0:99999:7:::\n',
        gshadow: 'root:*::\n',
      },
      { shell: '/bin/bash', now },
    );
    expect(user).toEqual({
      name: 'user',
      uid: 1000,
      gid: 1000,
      home: '/home/user',
      shell: '/bin/bash',
      added: true,
    });
    expect(files.passwd).toBe('root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/bash\n');
    // A file without a final newline is not glued to the new line.
    expect(files.group).toBe('root:x:0:\nuser:x:1000:\n');
    expect(files.shadow).toBe(`root:*:19000:0:99999:7:::\nuser:!:${days}:0:99999:7:::\n`);
    expect(files.gshadow).toBe('root:*::\nuser:!::\n');
  });

  it('leaves shadow files alone when the image has none', () => {
    const { files } = addDefaultUser(
      { passwd: 'root:x:0:0::/root:/bin/sh\n', group: 'root:x:0:\n' },
      { shell: '/bin/sh', now },
    );
    expect(files.shadow).toBeUndefined();
    expect(files.gshadow).toBeUndefined();
  });

  it('takes the next free ids when 1000 is taken (ubuntu:24.04 has ubuntu at 1000)', () => {
    const { files, user } = addDefaultUser(
      {
        passwd: 'root:x:0:0::/root:/bin/sh\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n# comment\n',
        group: 'root:x:0:\nubuntu:x:1000:\nstaff:x:1001:\n',
      },
      { shell: '/bin/sh', now },
    );
    expect(user).toMatchObject({ uid: 1001, gid: 1002 });
    expect(files.passwd).toContain('user:x:1001:1002::/home/user:/bin/sh\n');
    expect(files.group).toContain('user:x:1002:\n');
  });

  it('joins an existing group named user', () => {
    const { files, user } = addDefaultUser(
      { passwd: 'root:x:0:0::/root:/bin/sh\n', group: 'root:x:0:\nuser:x:2000:\n' },
      { shell: '/bin/sh', now },
    );
    expect(user).toMatchObject({ uid: 1000, gid: 2000 });
    expect(files.group).toBe('root:x:0:\nuser:x:2000:\n');
  });

  it('changes nothing when the image already has user', () => {
    const input = { passwd: 'user:x:1234:1234::/home/u:/bin/zsh\n', group: 'user:x:1234:\n' };
    const { files, user } = addDefaultUser(input, { shell: '/bin/sh', now });
    expect(files).toBe(input);
    expect(user).toEqual({
      name: 'user',
      uid: 1234,
      gid: 1234,
      home: '/home/u',
      shell: '/bin/zsh',
      added: false,
    });
  });
});
