import { api, unwrap, type Schemas } from '../api/client.js';

export type Build = Schemas['Build'];
export type BuildLogEntry = Schemas['BuildLogEntry'];
export type NewBuild = Schemas['CreateBuild'];
/** A team's builds (`/v1/builds`), or the platform's (`/v1/admin/builds`, administrators). */
export type BuildScope = 'team' | 'platform';

/** The same calls through either door; the paths differ, the shapes do not. */
export const buildApi = {
  list: async (scope: BuildScope) =>
    (await unwrap(scope === 'team' ? api.GET('/v1/builds') : api.GET('/v1/admin/builds'))).builds,
  create: (scope: BuildScope, body: NewBuild) =>
    unwrap(scope === 'team' ? api.POST('/v1/builds', { body }) : api.POST('/v1/admin/builds', { body })),
  cancel: (scope: BuildScope, id: string) => {
    const params = { params: { path: { id } } };
    return unwrap(
      scope === 'team'
        ? api.POST('/v1/builds/{id}/cancel', params)
        : api.POST('/v1/admin/builds/{id}/cancel', params),
    );
  },
  logs: (scope: BuildScope, id: string, offset: number) => {
    const params = { params: { path: { id }, query: { offset } } };
    return unwrap(
      scope === 'team'
        ? api.GET('/v1/builds/{id}/logs', params)
        : api.GET('/v1/admin/builds/{id}/logs', params),
    );
  },
};

export const isRunning = (b: Pick<Build, 'status'>) => b.status === 'waiting' || b.status === 'building';
