// The one way the web app talks to the server: the query API under /api/v1 with the session
// cookie, the project in X-Itinera-Project and the CSRF token on every state-changing request.
// Types mirror the answers documented in docs/openapi.json (only the fields the app reads).

export type Role = "viewer" | "editor" | "admin";
export interface User { id: number; email: string; role: Role; created_at: string }
export interface SessionInfo { user: User; csrf: string; projects: string[]; expires_at_ms: number }

export interface StageRow {
  stage: string;
  entered: number;
  reached: number;
  dropped: number;
  next_stage_conversion: number | null;
  cumulative_conversion: number | null;
  current: number;
  median_seconds_in_stage: number | null;
  p90_seconds_in_stage: number | null;
  touchpoints?: StageTouch[];
  channels?: StageTouch[];
}
export interface StageTouch { key: string; persons: number; share: number | null }
export interface StageModel { name: string; description: string; stages: { name: string }[]; purchase_stage?: string | null }
export interface StagesResult {
  model: StageModel;
  persons: number;
  stages: StageRow[];
  churned: number;
  customers: number;
  accounts?: { accounts: number; reached: number[]; cumulative_conversion: (number | null)[] } | null;
}
export interface ScoreRow {
  key?: string | null;
  n: number;
  mean: number;
  nps?: { nps: number; ci_low: number; ci_high: number } | null;
  good_share?: { share: number; ci_low: number; ci_high: number } | null;
  emotion: number;
  emotion_band?: [number, number] | null;
}
export interface ScoresResult { kind: "nps" | "csat" | "ces"; overall: ScoreRow; groups: ScoreRow[]; definition: string }
export interface StageCoverage { stage: string; accounts: number; mean_coverage: number; role_presence: Record<string, number> }
export interface AccountsResult { roles: string[]; by_stage: StageCoverage[] }
export interface FunnelStepResult {
  step: number;
  name: string;
  count: number;
  dropped: number;
  conversion_from_previous: number | null;
  median_seconds_from_previous: number | null;
  p90_seconds_from_previous: number | null;
}
export interface QueryWarning { field: string; message: string; suggestions?: string[] }
export interface FunnelResult { steps: FunnelStepResult[]; warnings?: QueryWarning[] }

export type TriggerWhen =
  | { enters_stage: { model: string; stage: string } }
  | { stalled_in_stage: { model: string; stage: string; after: string } }
  | { event: { event: unknown } };
export type TriggerAction = { webhook: { url: string; secret: string } } | { email: { to?: string; subject: string; body: string } } | { case: { title: string } } | { set_trait: { name: string; value: string } };
export interface TriggerRule {
  description?: string;
  when: TriggerWhen;
  segment?: string;
  persona?: string;
  actions: TriggerAction[];
  reentry_after?: string;
  max_per_minute?: number;
  holdout_percent?: number;
  enabled?: boolean;
  since_ms?: number;
  backfill_from_ms?: number;
}
export interface NamedTrigger extends TriggerRule { name: string }
export interface DryRun { from_ms: number; to_ms: number; persons: number; by_day: [number, number][]; sample: { person: string; at_ms: number; because: string }[] }
export interface Firing {
  person: string;
  at_ms: number;
  fired_at_ms: number;
  because: string;
  held_out: boolean;
  actions: { kind: string; status: string; attempts: number; last_status?: number; last_error?: string; idempotency_key: string }[];
}

export type LaneKind = "touchpoints" | "actions" | "thoughts" | "emotions" | "pain_points" | "opportunities" | "metrics" | "backstage";
export interface Card {
  id: string;
  lane: string;
  stage: string;
  step?: string;
  variant?: "as_is" | "to_be";
  text: string;
  owner?: string;
  status?: "open" | "in_progress" | "done" | "dropped";
  due?: string;
  from_flag?: string;
}
export interface JourneyMap {
  title: string;
  description: string;
  model: string;
  personas: string[];
  steps: { id: string; stage: string; name: string; selector: unknown }[];
  lanes: { id: string; kind: LaneKind; title: string }[];
  cards: Card[];
  emotions: { as_is: Record<string, number>; to_be: Record<string, number> };
  flags: { key: string; decision: "accepted" | "dismissed" }[];
  min_answers: number;
}
export interface MapView { name: string; version: number; updated_at?: string; updated_by?: string; map: JourneyMap; model: StageModel }
export interface MapVersion { version: number; saved_at: string; saved_by: string; note: string }
export interface Definitions { segments: { name: string }[]; personas: { name: string }[] }
export interface AlertRecord { id: number; rule: string; payload: { group?: string | null; type?: string }; created_at: string }
export interface Case { id: number; alert_id?: number | null; status: string; title: string }
export interface MapShare { id: number; prefix: string; created_at: string; created_by: string; expires_at_ms: number; revoked_at?: string | null }
export interface KeyInfo { id: number; kind: "write" | "read"; scope?: string | null; prefix: string; label: string; created_at: string; revoked_at?: string | null }

/** An error answer, with the field it names when there is one. */
export class ApiError extends Error {
  constructor(public status: number, message: string, public field?: string) {
    super(message);
  }
}

let csrf = "";
let project = "default";
let share = "";

export function setSession(s: SessionInfo | null) {
  csrf = s?.csrf ?? "";
}
export function setProject(p: string) {
  project = p;
}
/** A share link's secret: every call then carries it instead of a session. */
export function setShare(secret: string) {
  share = secret;
}

/** Filters every analysis takes in its query string. */
export interface Population { segment?: string; persona?: string }

export async function call<T>(method: string, path: string, body?: unknown, pop?: Population): Promise<T> {
  const q = new URLSearchParams();
  if (pop?.segment) q.set("segment", pop.segment);
  if (pop?.persona) q.set("persona", pop.persona);
  const url = `/api/v1${path}${q.size ? `?${q}` : ""}`;
  const headers: Record<string, string> = share ? { "x-itinera-share": share } : { "x-itinera-project": project };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET") headers["x-csrf-token"] = csrf;
  const resp = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  const json = text ? JSON.parse(text) : undefined;
  if (!resp.ok) {
    const field = json?.errors?.[0]?.field;
    throw new ApiError(resp.status, json?.error ?? resp.statusText, field);
  }
  return json as T;
}

export const api = {
  session: () => call<SessionInfo>("GET", "/session"),
  login: (email: string, password: string) => call<SessionInfo>("POST", "/session", { email, password }),
  logout: () => call<void>("DELETE", "/session"),
  definitions: () => call<Definitions>("GET", "/segments"),
  models: () => call<{ name: string; builtin: boolean; stages: string[] }[]>("GET", "/models"),
  maps: () => call<{ name: string; title: string; version: number }[]>("GET", "/maps"),
  map: (name: string) => call<MapView>("GET", `/maps/${encodeURIComponent(name)}`),
  saveMap: (name: string, map: JourneyMap, base_version: number, note = "") =>
    call<{ version: number }>("PUT", `/maps/${encodeURIComponent(name)}`, { map, base_version, note }),
  versions: (name: string) => call<MapVersion[]>("GET", `/maps/${encodeURIComponent(name)}/versions`),
  version: (name: string, v: number) => call<JourneyMap>("GET", `/maps/${encodeURIComponent(name)}/versions/${v}`),
  restore: (name: string, v: number) => call<{ version: number }>("POST", `/maps/${encodeURIComponent(name)}/versions/${v}/restore`),
  exportMap: (name: string) => call<unknown>("GET", `/maps/${encodeURIComponent(name)}/export`),
  stages: (body: unknown, pop: Population) => call<StagesResult>("POST", "/stages", body, pop),
  scores: (body: unknown, pop: Population) => call<ScoresResult>("POST", "/scores", body, pop),
  funnel: (body: unknown, pop: Population) => call<FunnelResult>("POST", "/funnel", body, pop),
  accounts: (body: unknown, pop: Population) => call<AccountsResult>("POST", "/accounts", body, pop),
  alerts: () => call<{ alerts: AlertRecord[] }>("GET", "/alerts"),
  cases: () => call<{ cases: Case[] }>("GET", "/cases"),
  shared: () => call<{ project: string; name: string; expires_at_ms: number }>("GET", "/share"),
  shares: (name: string) => call<MapShare[]>("GET", `/maps/${encodeURIComponent(name)}/shares`),
  createShare: (name: string, expires_in: string) =>
    call<{ url: string; share: MapShare }>("POST", `/maps/${encodeURIComponent(name)}/shares`, { expires_in }),
  revokeShare: (name: string, id: number) => call<void>("DELETE", `/maps/${encodeURIComponent(name)}/shares/${id}`),
  triggers: () => call<{ rules: NamedTrigger[] }>("GET", "/triggers"),
  saveTrigger: (name: string, rule: TriggerRule) => call<NamedTrigger>("PUT", `/triggers/${encodeURIComponent(name)}`, rule),
  deleteTrigger: (name: string) => call<void>("DELETE", `/triggers/${encodeURIComponent(name)}`),
  dryRun: (body: { name: string; from_ms: number; to_ms: number }) => call<DryRun>("POST", "/triggers/dry-run", body),
  firings: (name: string) => call<{ firings: Firing[] }>("GET", `/triggers/${encodeURIComponent(name)}/firings?limit=50`),
  users: () => call<User[]>("GET", "/users"),
  createUser: (email: string, role: Role, password: string) => call<User>("POST", "/users", { email, role, password }),
  setRole: (email: string, role: Role) => call<User>("PATCH", `/users/${encodeURIComponent(email)}`, { role }),
  deleteUser: (email: string) => call<void>("DELETE", `/users/${encodeURIComponent(email)}`),
  keys: () => call<KeyInfo[]>("GET", "/keys"),
  createKey: (kind: "write" | "token", scope: string | undefined, label: string) =>
    call<{ secret: string; key: KeyInfo }>("POST", "/keys", { kind, scope, label }),
  revokeKey: (id: number) => call<void>("DELETE", `/keys/${id}`),
};
