// The measured cells of a map: every figure carries data-metric (the field of the API answer
// that holds it), data-stage or data-step, and its unrounded value in data-value, so anyone can
// check the screen against the API.

import { h } from "preact";
import htm from "htm";
import type { I18n, Key } from "../i18n";
import type { ScoreRow, StageCoverage, StageRow } from "../api";

const html = htm.bind(h);

export function Figure(props: {
  metric: string;
  value: number | null | undefined;
  text: string;
  label: string;
  stage?: string;
  step?: string;
  score?: string;
  title?: string;
}) {
  return html`<div class="figure" title=${props.title ?? ""}>
    <span class="figure-label">${props.label}</span>
    <span
      class="figure-value"
      data-metric=${props.metric}
      data-stage=${props.stage ?? null}
      data-step=${props.step ?? null}
      data-score=${props.score ?? null}
      data-value=${props.value ?? ""}
    >${props.text}</span>
  </div>`;
}

export function StageFigures(props: {
  row: StageRow;
  last: boolean;
  nps?: ScoreRow;
  csat?: ScoreRow;
  ces?: ScoreRow;
  accounts?: number;
  coverage?: StageCoverage;
  minAnswers: number;
  confidence: number;
  i18n: I18n;
}) {
  const { row, i18n } = props;
  const s = row.stage;
  const score = (kind: "nps" | "csat" | "ces", r: ScoreRow | undefined, label: Key) => {
    if (!r) return html`<${Figure} metric="n" score=${kind} stage=${s} value=${0} text=${i18n.t("answers", { n: 0 })} label=${i18n.t(label)} />`;
    const fig = kind === "nps" ? r.nps : r.good_share;
    const value = r.nps && kind === "nps" ? r.nps.nps : r.good_share?.share;
    const text = value == null ? i18n.t("none") : kind === "nps" ? i18n.num(value) : i18n.pct(value);
    const interval = fig
      ? i18n.t("interval", {
          lo: kind === "nps" ? i18n.num(fig.ci_low) : i18n.pct(fig.ci_low),
          hi: kind === "nps" ? i18n.num(fig.ci_high) : i18n.pct(fig.ci_high),
        })
      : "";
    return html`<div class="score">
      <${Figure} metric=${kind === "nps" ? "nps" : "good_share"} score=${kind} stage=${s} value=${value} text=${text}
        label=${i18n.t(label)} title=${kind === "nps" ? i18n.t("def_nps", { c: Math.round(props.confidence * 100) }) : ""} />
      <span class="score-n" data-metric="n" data-score=${kind} data-stage=${s} data-value=${r.n}>${i18n.t("answers", { n: r.n })}</span>
      <span class="score-ci" data-metric="ci" data-score=${kind} data-stage=${s} data-value=${fig ? `${fig.ci_low},${fig.ci_high}` : ""}>${interval}</span>
    </div>`;
  };
  return html`<div class="stage-figures">
    <${Figure} metric="entered" stage=${s} value=${row.entered} text=${i18n.num(row.entered)} label=${i18n.t("entered")} title=${i18n.t("def_entered")} />
    ${props.last
      ? null
      : html`<${Figure} metric="next_stage_conversion" stage=${s} value=${row.next_stage_conversion}
            text=${i18n.pct(row.next_stage_conversion)} label=${i18n.t("next_conversion")} title=${i18n.t("def_next")} />
          <${Figure} metric="dropped" stage=${s} value=${row.dropped}
            text=${`${i18n.num(row.dropped)} (${i18n.pct(row.next_stage_conversion == null ? null : 1 - row.next_stage_conversion)})`}
            label=${i18n.t("drop_off")} title=${i18n.t("def_drop")} />`}
    <${Figure} metric="median_seconds_in_stage" stage=${s} value=${row.median_seconds_in_stage}
      text=${i18n.duration(row.median_seconds_in_stage)} label=${i18n.t("median_time")} title=${i18n.t("def_time")} />
    <${Figure} metric="p90_seconds_in_stage" stage=${s} value=${row.p90_seconds_in_stage}
      text=${i18n.duration(row.p90_seconds_in_stage)} label=${i18n.t("p90_time")} title=${i18n.t("def_time")} />
    ${props.accounts == null
      ? null
      : html`<${Figure} metric="accounts.reached" stage=${s} value=${props.accounts} text=${i18n.num(props.accounts)} label=${i18n.t("b2b")} title=${i18n.t("def_accounts_reached")} />`}
    ${props.coverage
      ? html`<div class="score">
          <${Figure} metric="by_stage.accounts" stage=${s} value=${props.coverage.accounts} text=${i18n.num(props.coverage.accounts)}
            label=${i18n.t("accounts_here")} title=${i18n.t("def_accounts_here")} />
          <${Figure} metric="by_stage.mean_coverage" stage=${s} value=${props.coverage.accounts ? props.coverage.mean_coverage : null}
            text=${props.coverage.accounts ? i18n.pct(props.coverage.mean_coverage) : i18n.t("none")} label=${i18n.t("coverage")} title=${i18n.t("def_coverage")} />
          ${props.coverage.accounts
            ? Object.entries(props.coverage.role_presence).map(
                ([role, share]) => html`<${Figure} metric="by_stage.role_presence" stage=${s} value=${share} text=${i18n.pct(share)} label=${role} />`,
              )
            : null}
        </div>`
      : null}
    ${score("nps", props.nps, "nps")} ${score("csat", props.csat, "csat")} ${score("ces", props.ces, "ces")}
  </div>`;
}
