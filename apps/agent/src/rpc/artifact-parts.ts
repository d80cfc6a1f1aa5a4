import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, invalidArgument } from '@wrenn/core';
import { hostagent } from '@wrenn/contracts';
import type { ArtifactDigest } from '../storage/artifact-stream.js';
import { validateSandboxId, validateTemplateNameField } from './validation.js';

// Chunks of a few hundred KiB keep per-message overhead small and memory per transfer bounded.
const MAX_CHUNK_BYTES = 1024 * 1024;

export interface ArtifactTarget {
  kind: 'template' | 'sandbox';
  /** The template's name or the sandbox's id, validated. */
  name: string;
}

export function validateArtifactRef(ref: hostagent.ArtifactRef | undefined, field: string): ArtifactTarget {
  switch (ref?.kind) {
    case hostagent.ArtifactKind.TEMPLATE:
      return { kind: 'template', name: validateTemplateNameField(ref.name, `${field}.name`) };
    case hostagent.ArtifactKind.SANDBOX:
      return { kind: 'sandbox', name: validateSandboxId(ref.name, `${field}.name`) };
    case hostagent.ArtifactKind.UNSPECIFIED:
    case undefined:
      throw invalidArgument(`${field}.kind`, 'must be ARTIFACT_KIND_TEMPLATE or ARTIFACT_KIND_SANDBOX');
  }
}

/** An export as the messages of the stream: header, chunks, end with the digest. */
export async function* exportParts(
  ref: hostagent.ArtifactRef,
  bytes: AsyncGenerator<Uint8Array, ArtifactDigest>,
): AsyncGenerator<MessageInitShape<typeof hostagent.ExportArtifactResponseSchema>> {
  yield { part: { part: { case: 'header', value: ref } } };
  for (;;) {
    const next = await bytes.next();
    if (next.done) {
      yield { part: { part: { case: 'end', value: next.value } } };
      return;
    }
    for (let at = 0; at < next.value.byteLength; at += MAX_CHUNK_BYTES)
      yield { part: { part: { case: 'chunk', value: next.value.subarray(at, at + MAX_CHUNK_BYTES) } } };
  }
}

/**
 * An import stream taken apart: its header, its chunks, and `verify`, which checks what the
 * receiver computed against the sender's `end`. A stream that stops without `end` (cut off or
 * cancelled) fails before anything is put in place.
 */
export async function importParts(requests: AsyncIterable<hostagent.ImportArtifactRequest>): Promise<{
  target: ArtifactTarget;
  chunks: AsyncGenerator<Uint8Array>;
  verify: (received: ArtifactDigest) => void;
}> {
  const iterator = requests[Symbol.asyncIterator]();
  const first = await iterator.next();
  const header = first.done ? undefined : first.value.part?.part;
  if (header?.case !== 'header') throw invalidArgument('header', 'the first message must carry the header');
  const target = validateArtifactRef(header.value, 'header');
  let end: hostagent.ArtifactEnd | undefined;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const part = next.value.part?.part;
      if (part?.case === 'end') {
        end = part.value;
        if (!(await iterator.next()).done) throw invalidArgument('end', 'must be the last message');
        return;
      }
      if (part?.case !== 'chunk') throw invalidArgument('chunk', 'only the first message may carry a header');
      yield part.value;
    }
    throw new ConnectError('the transfer stopped before its end message; nothing was kept', Code.Aborted);
  }
  const verify = (received: ArtifactDigest) => {
    if (!end) throw new ConnectError('the transfer ended without its end message', Code.Aborted);
    if (end.size !== received.size)
      throw invalidArgument('end.size', `is ${end.size}, but ${received.size} bytes arrived`);
    if (end.sha256 !== received.sha256)
      throw new ConnectError(
        `end.sha256: the bytes that arrived hash to ${received.sha256}, the sender's to ${end.sha256}`,
        Code.DataLoss,
      );
  };
  return { target, chunks: chunks(), verify };
}
