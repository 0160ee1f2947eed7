// The live figures of a map, fetched from the same endpoints (and with the same filters) anyone
// can call: /api/v1/stages for the stage cells, /api/v1/scores for NPS/CSAT/CES and the measured
// emotion curve (one per persona of the map), /api/v1/funnel over the map's steps and
// /api/v1/scores by those steps for the step cells.

import { api, type AccountsResult, type FunnelResult, type MapView, type Population, type ScoresResult, type StagesResult } from "../api";

export interface Filters extends Population {
  from?: string; // YYYY-MM-DD, inclusive
  to?: string; // YYYY-MM-DD, inclusive
  b2b?: boolean;
}

export interface Figures {
  stages: StagesResult;
  nps: ScoresResult;
  csat: ScoresResult;
  ces: ScoresResult;
  /** Measured emotion: first of the filters' population (`population`), then per persona of
   *  the map. */
  curves: { persona: string; population?: boolean; scores: ScoresResult }[];
  steps: FunnelResult | null;
  /** NPS by the map's steps (`by: step`, keyed by step id): the step done last before answering. */
  stepNps: ScoresResult | null;
  /** With the B2B filter: the buying groups of the accounts at each stage. */
  accounts: AccountsResult | null;
  /** Per stage: cases not yet closed that alerts on answers given in the stage opened. */
  openCases: Record<string, { cases: number; rules: string[] }>;
  asOf: number;
}

/** Open cases per stage: a case belongs to the stage its alert names (alert rules by stage). */
async function openCasesByStage(): Promise<Figures["openCases"]> {
  const [{ alerts }, { cases }] = await Promise.all([api.alerts(), api.cases()]);
  const byId = new Map(alerts.map((a) => [a.id, a]));
  const out: Figures["openCases"] = {};
  for (const c of cases) {
    if (c.status === "closed" || c.alert_id == null) continue;
    const a = byId.get(c.alert_id);
    const stage = a?.payload?.group;
    if (!a || !stage) continue;
    const e = (out[stage] ??= { cases: 0, rules: [] });
    e.cases += 1;
    if (!e.rules.includes(a.rule)) e.rules.push(a.rule);
  }
  return out;
}

const DAY = 86_400_000;
/** Touchpoints and channels listed per stage. */
export const TOP_TOUCHPOINTS = 5;

export function range(f: Filters): { from_ms?: number; to_ms?: number } {
  const r: { from_ms?: number; to_ms?: number } = {};
  if (f.from) r.from_ms = Date.parse(`${f.from}T00:00:00Z`);
  if (f.to) r.to_ms = Date.parse(`${f.to}T00:00:00Z`) + DAY;
  return r;
}

export async function loadFigures(view: MapView, f: Filters, shared = false): Promise<Figures> {
  const pop: Population = { segment: f.segment, persona: f.persona };
  const span = range(f);
  const model = view.map.model;
  const stagesQ = { model, ...span, top_touchpoints: TOP_TOUCHPOINTS, ...(f.b2b ? { accounts: {} } : {}) };
  const score = (kind: string, p: Population) => api.scores({ kind, by: "stage", model, ...span }, p);
  // one measured curve per persona of the map, unless the filters already choose one persona
  const personas = f.persona ? [] : view.map.personas.slice(0, 5);
  const steps = view.map.steps.length
    ? api.funnel(
        {
          steps: view.map.steps.map((s) => ({ match: s.selector, name: s.name })),
          window: "90d",
          ...span,
        },
        pop,
      )
    : Promise.resolve(null);
  // step ids as names: the answer's groups are keyed by them, unique even when names repeat
  const stepNps = view.map.steps.length
    ? api.scores({ kind: "nps", by: "step", steps: view.map.steps.map((s) => ({ match: s.selector, name: s.id })), ...span }, pop)
    : Promise.resolve(null);
  const accounts = f.b2b ? api.accounts({ model, limit: 0, ...span }, pop) : Promise.resolve(null);
  const [accountFigures, openCases, stages, nps, csat, ces, stepFigures, stepScores, ...perPersona] = await Promise.all([
    accounts,
    // a share link shows the map's figures, not the project's alerts and cases
    shared ? Promise.resolve({}) : openCasesByStage(),
    api.stages(stagesQ, pop),
    score("nps", pop),
    score("csat", pop),
    score("ces", pop),
    steps,
    stepNps,
    ...personas.map((p) => score("nps", { segment: f.segment, persona: p })),
  ]);
  const curves = [{ persona: f.persona ?? "", population: true, scores: nps }, ...personas.map((p, i) => ({ persona: p, scores: perPersona[i] }))];
  return { stages, nps, csat, ces, curves, steps: stepFigures, stepNps: stepScores, accounts: accountFigures, openCases, asOf: Date.now() };
}

/** The score row of a stage, if any answers fell in it. */
export function scoreOf(r: ScoresResult, stage: string) {
  return r.groups.find((g) => g.key === stage);
}
