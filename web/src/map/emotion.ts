// The emotion curve: typed as-is and to-be curves and the measured ones (per persona, from
// survey answers per stage, hidden below the map's minimum n), drawn with ECharts over the
// stages, with the same numbers in a table for keyboard and screen-reader users.

import { h } from "preact";
import { useEffect, useRef } from "preact/hooks";
import htm from "htm";
import type { I18n } from "../i18n";
import type { JourneyMap } from "../api";
import type { Figures } from "./figures";
import { scoreOf } from "./figures";

const html = htm.bind(h);

export interface Curve {
  name: string;
  /** Per stage: the value, or null when not drawn. */
  values: (number | null)[];
  n?: (number | null)[];
  /** The measured value's interval per stage. */
  band?: ([number, number] | null)[];
  kind: "typed" | "measured";
  /** Measured curves: the persona ("" = everyone in the filters). */
  persona?: string;
}

export function curvesOf(map: JourneyMap, stages: string[], fig: Figures | null, i18n: I18n): Curve[] {
  const curves: Curve[] = [
    { name: i18n.t("typed_as_is"), values: stages.map((s) => map.emotions.as_is[s] ?? null), kind: "typed" },
    { name: i18n.t("typed_to_be"), values: stages.map((s) => map.emotions.to_be[s] ?? null), kind: "typed" },
  ];
  for (const c of fig?.curves ?? []) {
    const rows = stages.map((s) => scoreOf(c.scores, s));
    curves.push({
      name: i18n.t("measured", { who: c.persona || i18n.t("overall") }),
      values: rows.map((r) => (r && r.n >= map.min_answers ? r.emotion : null)),
      n: rows.map((r) => r?.n ?? null),
      band: rows.map((r) => (r && r.n >= map.min_answers && r.emotion_band ? r.emotion_band : null)),
      kind: "measured",
      // the filters' population is "" whatever persona the filters chose
      persona: c.population ? "" : c.persona,
    });
  }
  return curves;
}

export function EmotionChart(props: { stages: string[]; curves: Curve[]; i18n: I18n }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    let chart: { dispose(): void; setOption(o: unknown): void } | null = null;
    let cancelled = false;
    import("../charts/echarts").then(({ echarts }) => {
      if (cancelled || !el.current) return;
      chart = echarts.init(el.current, undefined, { renderer: "svg" });
      chart.setOption({
        animation: false,
        grid: { left: 40, right: 16, top: 36, bottom: 24 },
        legend: { top: 0, type: "scroll" },
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: props.stages },
        yAxis: { type: "value", min: -2, max: 2, interval: 1 },
        series: props.curves.flatMap((c, i) => [
          {
            name: c.name,
            type: "line",
            data: c.values,
            connectNulls: false,
            lineStyle: c.kind === "typed" ? { type: "dashed" } : { width: 3 },
            symbolSize: c.kind === "typed" ? 6 : 9,
          },
          // the band: an invisible lower edge, and the band's height stacked on it
          ...(c.band
            ? [
                { name: c.name, type: "line", data: c.band.map((b) => (b ? b[0] : null)), stack: `band${i}`,
                  lineStyle: { opacity: 0 }, symbol: "none", silent: true, tooltip: { show: false } },
                { name: c.name, type: "line", data: c.band.map((b) => (b ? b[1] - b[0] : null)), stack: `band${i}`,
                  lineStyle: { opacity: 0 }, symbol: "none", silent: true, areaStyle: { opacity: 0.12 }, tooltip: { show: false } },
              ]
            : []),
        ]),
      });
    });
    return () => {
      cancelled = true;
      chart?.dispose();
    };
  }, [JSON.stringify(props.curves), props.stages.join("|")]);
  const { i18n } = props;
  return html`
    <figure class="emotion" aria-label=${i18n.t("emotion_curve")}>
      <div ref=${el} class="emotion-chart" role="img" aria-label=${i18n.t("emotion_curve")}></div>
      <details>
        <summary>${i18n.t("emotion_table")}</summary>
        <table>
          <thead><tr><th scope="col">${i18n.t("emotion_curve")}</th>${props.stages.map((s) => html`<th scope="col">${s}</th>`)}</tr></thead>
          <tbody>
            ${props.curves.map(
              (c) => html`<tr>
                <th scope="row">${c.name}</th>
                ${c.values.map(
                  (v, i) => html`<td
                    data-metric=${c.kind === "measured" ? "emotion" : null}
                    data-persona=${c.kind === "measured" ? c.persona : null}
                    data-stage=${props.stages[i]}
                    data-value=${v ?? ""}
                    data-band=${c.band?.[i] ? c.band[i]!.join(",") : null}
                  >${v == null
                    ? c.n?.[i] != null ? i18n.t("too_few", { n: c.n[i] ?? 0 }) : i18n.t("none")
                    : c.band?.[i]
                      ? `${i18n.num(v)} (${i18n.t("interval", { lo: i18n.num(c.band[i]![0]), hi: i18n.num(c.band[i]![1]) })})`
                      : i18n.num(v)}</td>`,
                )}
              </tr>`,
            )}
          </tbody>
        </table>
      </details>
      <figcaption class="definition">${i18n.t("def_emotion")}</figcaption>
    </figure>
  `;
}
