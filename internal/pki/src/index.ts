// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { generateKeyPair as generateNodeKeyPair, webcrypto, X509Certificate } from 'node:crypto';
import type { SecureServerOptions } from 'node:http2';
import { isIP } from 'node:net';
import type { ConnectionOptions, PeerCertificate, TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';

// The fleet's certificates (docs/fleet.md): one CA per cluster, kept by the control plane; a
// certificate per host naming its host id; a certificate per control-plane process. Identities live
// in SAN URIs, never in host names: the address an agent is dialled at is not what is trusted.

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const CONTROL_PLANE_URI = 'urn:wrenn:control-plane';
const HOST_URI_PREFIX = 'urn:wrenn:host:';
/** Certificates start this far in the past: hosts' clocks are not in step to the second. */
const CLOCK_SKEW_MS = 5 * 60_000;

export type Identity = { kind: 'control-plane' } | { kind: 'host'; hostId: string };

export interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
}

/** What one end of a mutual-TLS channel holds: its key and certificate, and the cluster's CA. */
export interface TlsMaterial {
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** An ECDSA P-256 key pair; the private key stays with whoever made it. */
export async function generateKeyPair(): Promise<KeyPairPem> {
  const { privateKey, publicKey } = await promisify(generateNodeKeyPair)('ec', {
    namedCurve: 'P-256',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

export async function createCertificateAuthority(
  name = 'Wrenn cluster CA',
  days = 3650,
): Promise<CertificateAuthority> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${escapeDn(name)}`,
    ...validity(days),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), keyPem: toPem(pkcs8, 'PRIVATE KEY') };
}

/**
 * A certificate for `publicKeyPem` naming `identity`, for both server and client use, signed by the
 * CA. `addresses` (IPs or DNS names) go into the SAN so ordinary TLS tools can check them too.
 */
export async function issueCertificate(
  ca: CertificateAuthority,
  opts: { publicKeyPem: string; identity: Identity; addresses?: string[]; days: number },
): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', fromPem(ca.keyPem), ALGORITHM, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', fromPem(opts.publicKeyPem), ALGORITHM, true, [
    'verify',
  ]);
  const uri = identityUri(opts.identity);
  const names: x509.JsonGeneralName[] = [{ type: 'url', value: uri }];
  for (const address of opts.addresses ?? []) {
    names.push({ type: isIP(address) ? 'ip' : 'dns', value: address });
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${escapeDn(uri)}`,
    issuer: caCert.subject,
    ...validity(opts.days),
    publicKey,
    signingKey: caKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return cert.toString('pem');
}

/** The identity a certificate names, or undefined when it names none (or several). */
export function identityOf(cert: PeerCertificate | string): Identity | undefined {
  const san: string =
    typeof cert === 'string' ? (new X509Certificate(cert).subjectAltName ?? '') : (cert.subjectaltname ?? '');
  const uris = san
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4));
  if (uris.length !== 1) return undefined;
  const [uri = ''] = uris;
  if (uri === CONTROL_PLANE_URI) return { kind: 'control-plane' };
  if (uri.startsWith(HOST_URI_PREFIX) && uri.length > HOST_URI_PREFIX.length) {
    return { kind: 'host', hostId: uri.slice(HOST_URI_PREFIX.length) };
  }
  return undefined;
}

/** Whether `certPem` was signed by the CA and is valid at `now`. */
export function isIssuedBy(certPem: string, caPem: string, now = new Date()): boolean {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  return (
    cert.checkIssued(ca) &&
    cert.verify(ca.publicKey) &&
    new Date(cert.validFrom) <= now &&
    now <= new Date(cert.validTo)
  );
}

/** When a certificate starts and stops being valid (ms since the epoch). */
export function validityOf(certPem: string): { from: number; to: number } {
  const cert = new X509Certificate(certPem);
  return { from: Date.parse(cert.validFrom), to: Date.parse(cert.validTo) };
}

/**
 * HTTP/2 flow-control windows of the control plane ↔ agent channel (per stream, per session). The
 * protocol's 64 KiB defaults let a sender run only 64 KiB ahead of the receiver's event loop; with
 * three busy event loops on an artifact's path (agent, control plane, agent) that bounded a move to
 * ~20 MiB/s (bench:move). Memory per stream stays bounded by the window.
 */
export const CHANNEL_STREAM_WINDOW = 8 * 1024 * 1024;
export const CHANNEL_SESSION_WINDOW = 32 * 1024 * 1024;

/**
 * The agent's server: TLS 1.3, a client certificate from the cluster's CA required at the handshake.
 * The CA alone would let one host call another; `peerIsControlPlane` checks who it is.
 */
export function agentServerTlsOptions(material: TlsMaterial): SecureServerOptions {
  return {
    settings: { initialWindowSize: CHANNEL_STREAM_WINDOW },
    key: material.keyPem,
    cert: material.certPem,
    ca: material.caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    allowHTTP1: false,
  };
}

/** Whether the peer of an authorised TLS connection presented the control plane's certificate. */
export function peerIsControlPlane(socket: TLSSocket): boolean {
  if (!socket.authorized) return false;
  return identityOf(socket.getPeerCertificate())?.kind === 'control-plane';
}

/**
 * The control plane's side of a call to host `hostId`: its client certificate, the cluster's CA, and
 * a server check that the agent's certificate names that host (whatever address it was dialled at).
 */
export function controlPlaneClientTlsOptions(
  material: TlsMaterial,
  hostId: string,
): ConnectionOptions & { settings: { initialWindowSize: number } } {
  return {
    settings: { initialWindowSize: CHANNEL_STREAM_WINDOW },
    key: material.keyPem,
    cert: material.certPem,
    ca: material.caPem,
    minVersion: 'TLSv1.3',
    checkServerIdentity: (_host, cert) => {
      const identity = identityOf(cert);
      if (identity?.kind === 'host' && identity.hostId === hostId) return undefined;
      return new Error(`the agent's certificate does not name host ${hostId}`);
    },
  };
}

function identityUri(identity: Identity): string {
  return identity.kind === 'control-plane' ? CONTROL_PLANE_URI : HOST_URI_PREFIX + identity.hostId;
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + days * 86_400_000) };
}

function serialNumber(): string {
  // Positive (top bit clear) 16 random bytes, as RFC 5280 asks of serials.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

function escapeDn(value: string): string {
  return value.replace(/([,+="\\<>;#])/g, '\\$1');
}

function toPem(der: ArrayBuffer, label: string): string {
  const base64 = Buffer.from(der).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function fromPem(pem: string): ArrayBuffer {
  const base64 = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, '').replace(/\s+/g, '');
  const bytes = Buffer.from(base64, 'base64');
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}
