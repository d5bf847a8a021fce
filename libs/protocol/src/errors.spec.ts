import { describe, expect, it } from 'vitest';
import { ERROR_MESSAGES, ErrorCode, FATAL_CODES, isErrorCode, ProtocolError } from './index';

const CODES = Object.values(ErrorCode);

describe('error codes', () => {
  it('each have a non-empty message, and there is no message without a code', () => {
    for (const code of CODES) expect(ERROR_MESSAGES[code].trim()).not.toBe('');
    expect(Object.keys(ERROR_MESSAGES).sort()).toEqual([...CODES].sort());
  });

  it('are their own names, so scripts can match them on the wire', () => {
    for (const [name, code] of Object.entries(ErrorCode)) expect(code).toBe(name);
  });

  it('are recognised by isErrorCode, and nothing else is', () => {
    for (const code of CODES) expect(isErrorCode(code)).toBe(true);
    for (const x of ['', 'nope', 'toString', '__proto__', 'hasOwnProperty', 42, null, undefined]) {
      expect(isErrorCode(x)).toBe(false);
    }
  });

  it('that are fatal are all codes of the enum', () => {
    for (const code of FATAL_CODES) expect(CODES).toContain(code);
  });
});

describe('ProtocolError', () => {
  it("defaults to the code's message and keeps a specific one when given", () => {
    for (const code of CODES) {
      const e = new ProtocolError(code);
      expect(e).toBeInstanceOf(Error);
      expect(e.name).toBe('ProtocolError');
      expect(e.code).toBe(code);
      expect(e.message).toBe(ERROR_MESSAGES[code]);
    }
    expect(new ProtocolError(ErrorCode.TIMEOUT, 'no update in 300 s').message).toBe(
      'no update in 300 s',
    );
  });
});
