import { describe, expect, it } from 'vitest';
import { permissionsString } from './file-mode.js';

// Expected strings are what Go's os.FileMode.String() prints, which E2B's envd sends.
describe('permissionsString', () => {
  it.each([
    [0o100644, '-rw-r--r--'],
    [0o100755, '-rwxr-xr-x'],
    [0o040755, 'drwxr-xr-x'],
    [0o041777, 'dtrwxrwxrwx'],
    [0o120777, 'Lrwxrwxrwx'],
    [0o104755, 'urwxr-xr-x'],
    [0o102755, 'grwxr-xr-x'],
    [0o020666, 'Dcrw-rw-rw-'],
    [0o060660, 'Drw-rw----'],
    [0o010600, 'prw-------'],
    [0o140755, 'Srwxr-xr-x'],
    [0o100000, '----------'],
  ])('mode %o → %s', (mode, expected) => {
    expect(permissionsString(mode)).toBe(expected);
  });
});
