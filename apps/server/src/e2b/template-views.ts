import { ENVD_VERSION } from '@wrenn/contracts';
import type { BuildStatus } from '../db/schema.js';
import type { BuildRow } from '../services/builds/builds.js';

// How E2B's template API shows builds, logs and templates (TemplateBuildInfo, BuildLogEntry,
// TemplateBuild, Template in its OpenAPI).

export interface LogRow {
  at: Date;
  level: 'debug' | 'info' | 'warn' | 'error';
  step: string | null;
  message: string;
}

/** E2B knows waiting, building, ready and error; a cancelled build is an error (reason "cancelled"). */
export const e2bBuildStatus = (status: BuildStatus) => (status === 'cancelled' ? 'error' : status);

export function logEntryView(row: LogRow) {
  return {
    timestamp: new Date(row.at).toISOString(),
    level: row.level,
    message: row.message,
    ...(row.step !== null ? { step: row.step } : {}),
  };
}

/** Why a build ended without a template: its failure (step, message, the log's last lines), or cancelled. */
export function buildReason(row: BuildRow) {
  const at = (row.finished_at ?? row.created_at).toISOString();
  if (row.status === 'cancelled') return { message: 'cancelled', logEntries: [] };
  if (row.status !== 'error') return undefined;
  const failure = row.reason;
  if (!failure) return { message: 'the build failed', logEntries: [] };
  return {
    message: failure.message,
    step: failure.step,
    logEntries: (failure.log_tail ?? []).map((message) => ({
      timestamp: at,
      level: 'error' as const,
      message,
    })),
  };
}

/** `GET /templates/{id}/builds/{id}/status` (TemplateBuildInfo), with one page of the log. */
export function buildInfoView(row: BuildRow, logs: LogRow[]) {
  const reason = buildReason(row);
  return {
    templateID: row.template_id,
    buildID: row.id,
    status: e2bBuildStatus(row.status),
    logEntries: logs.map(logEntryView),
    logs: logs.map((l) => `${new Date(l.at).toISOString()} ${l.level}: ${l.message}`),
    ...(reason ? { reason } : {}),
  };
}

/** One build in a template's listing (TemplateBuild). */
export function templateBuildView(row: BuildRow) {
  return {
    buildID: row.id,
    status: e2bBuildStatus(row.status),
    cpuCount: row.vcpus,
    memoryMB: row.memory_mb,
    diskSizeMB: row.disk_mb,
    envdVersion: ENVD_VERSION,
    createdAt: row.created_at.toISOString(),
    updatedAt: (row.finished_at ?? row.started_at ?? row.created_at).toISOString(),
    ...(row.finished_at ? { finishedAt: row.finished_at.toISOString() } : {}),
  };
}

export interface TemplateRow {
  id: string;
  team_id: string | null;
  name: string;
  vcpus: number;
  memory_mb: number;
  disk_mb: number;
  created_at: Date;
}

/** A built template as `GET /templates` lists it (Template): its latest ready build's id and sizes. */
export function templateView(row: TemplateRow, builds: BuildRow[]) {
  const ready = builds.find((b) => b.status === 'ready');
  const latest = builds[0];
  const sizes = ready ?? latest;
  return {
    templateID: row.id,
    buildID: ready?.id ?? '',
    buildStatus: latest ? e2bBuildStatus(latest.status) : 'waiting',
    buildCount: builds.length,
    cpuCount: sizes?.vcpus ?? row.vcpus,
    memoryMB: sizes?.memory_mb ?? row.memory_mb,
    diskSizeMB: sizes?.disk_mb ?? row.disk_mb,
    envdVersion: ENVD_VERSION,
    names: [row.name],
    aliases: [row.name],
    public: row.team_id === null,
    createdAt: row.created_at.toISOString(),
    updatedAt: (latest?.finished_at ?? latest?.created_at ?? row.created_at).toISOString(),
    createdBy: null,
    lastSpawnedAt: null,
    spawnCount: 0,
  };
}
