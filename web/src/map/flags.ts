// Pain points the data flags on a map, each with its reason: the largest drop-off against the
// model's other stages, the lowest NPS against the overall one, open cases from alerts on
// answers given in a stage, and a p90 time in stage far above the median. The team accepts a flag (it becomes a pain-point card) or dismisses it.

import type { I18n } from "../i18n";
import type { Figures } from "./figures";
import { scoreOf } from "./figures";

export interface Flag {
  key: string;
  stage: string;
  reason: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function flagsOf(fig: Figures, minAnswers: number, i18n: I18n): Flag[] {
  const flags: Flag[] = [];
  const rows = fig.stages.stages;
  const drops = rows
    .slice(0, -1)
    .filter((r) => r.reached > 0 && r.next_stage_conversion != null)
    .map((r) => ({ stage: r.stage, drop: 1 - (r.next_stage_conversion ?? 0) }));
  if (drops.length >= 2) {
    const worst = drops.reduce((a, b) => (b.drop > a.drop ? b : a));
    const med = median(drops.map((d) => d.drop));
    if (worst.drop > med) {
      flags.push({
        key: `drop-off:${worst.stage}`,
        stage: worst.stage,
        reason: i18n.t("flag_drop", { p: i18n.pct(worst.drop), s: worst.stage, m: i18n.pct(med) }),
      });
    }
  }
  const overall = fig.nps.overall.nps?.nps;
  const scored = rows
    .map((r) => ({ stage: r.stage, row: scoreOf(fig.nps, r.stage) }))
    .filter((x) => x.row && x.row.n >= minAnswers && x.row.nps);
  if (scored.length >= 2 && overall != null) {
    const low = scored.reduce((a, b) => (b.row!.nps!.nps < a.row!.nps!.nps ? b : a));
    const v = low.row!.nps!.nps;
    if (overall - v >= 10) {
      flags.push({
        key: `score:${low.stage}`,
        stage: low.stage,
        reason: i18n.t("flag_score", { v: i18n.num(v), s: low.stage, n: low.row!.n, d: i18n.num(overall - v), o: i18n.num(overall) }),
      });
    }
  }
  for (const r of rows) {
    const open = fig.openCases[r.stage];
    if (open && open.cases > 0) {
      flags.push({
        key: `cases:${r.stage}`,
        stage: r.stage,
        reason: i18n.t("flag_cases", { n: open.cases, s: r.stage, rules: open.rules.join(", ") }),
      });
    }
  }
  for (const r of rows) {
    const med = r.median_seconds_in_stage;
    const p90 = r.p90_seconds_in_stage;
    if (med && p90 && med > 0 && p90 / med >= 5) {
      flags.push({
        key: `time:${r.stage}`,
        stage: r.stage,
        reason: i18n.t("flag_time", { s: r.stage, p90: i18n.duration(p90), x: i18n.num(p90 / med), med: i18n.duration(med) }),
      });
    }
  }
  return flags;
}
