import { create } from '@bufbuild/protobuf';
import type { StreamResponse, UnaryResponse } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { currentLogContext } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import { callContext } from './call-context.js';

// The interceptor alone, around handlers that report the log context they run in.

const method = hostagent.HostAgentService.method.execStream;
const request = (requestId?: string) =>
  ({
    stream: false,
    method,
    header: new Headers(requestId ? { 'x-request-id': requestId } : {}),
  }) as unknown as Parameters<ReturnType<ReturnType<typeof callContext>>>[0];

describe('callContext', () => {
  it('runs a unary handler in the log context of its request id', async () => {
    let seen: unknown;
    const next = () => {
      seen = currentLogContext();
      return Promise.resolve({ stream: false } as UnaryResponse);
    };
    await callContext(undefined)(next)(request('req-u1'));
    expect(seen).toEqual({ requestId: 'req-u1' });
    expect(currentLogContext()).toBeUndefined();
  });

  it("keeps the context while a response stream is read, after the handler's promise settled", async () => {
    const seen: unknown[] = [];
    async function* messages() {
      seen.push(currentLogContext());
      await new Promise((r) => setTimeout(r, 5));
      yield create(hostagent.ExecStreamResponseSchema);
      seen.push(currentLogContext());
    }
    const next = () => Promise.resolve({ stream: true, message: messages() } as unknown as StreamResponse);
    const res = (await callContext(undefined)(next)(request('req-s2'))) as StreamResponse;
    // Read from outside any context, as the adapter does.
    for await (const _ of res.message) void _;
    expect(seen).toEqual([{ requestId: 'req-s2' }, { requestId: 'req-s2' }]);
  });

  it('adds nothing without a sane request id', async () => {
    let seen: unknown;
    const next = () => {
      seen = currentLogContext();
      return Promise.resolve({ stream: false } as UnaryResponse);
    };
    await callContext(undefined)(next)(request('has spaces'));
    expect(seen).toEqual({});
  });
});
