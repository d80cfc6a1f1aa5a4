import type { IncomingMessage } from 'node:http';

export class BodyTooLargeError extends Error {}

/** Reads a small request body (JSON control messages), refusing more than maxBytes. */
export async function readSmallBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new BodyTooLargeError(`request body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
