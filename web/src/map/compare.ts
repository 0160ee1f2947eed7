// Two versions of a map side by side: what a save changed, card by card (added, removed,
// edited), in the typed emotion curves, the steps and the title.

import { h } from "preact";
import htm from "htm";
import type { Card, JourneyMap } from "../api";
import type { I18n } from "../i18n";

const html = htm.bind(h);

export interface Change {
  what: string;
  before: string;
  after: string;
}

const cardText = (c: Card) =>
  [c.text, c.owner, c.status?.replace("_", " "), c.due].filter(Boolean).join(" · ") + ` [${c.lane}, ${c.stage}${c.variant === "to_be" ? ", to-be" : ""}]`;

/** The differences from `old` to `now`. */
export function changes(old: JourneyMap, now: JourneyMap, i18n: I18n): Change[] {
  const out: Change[] = [];
  if (old.title !== now.title) out.push({ what: i18n.t("title"), before: old.title, after: now.title });
  if (old.model !== now.model) out.push({ what: i18n.t("stage"), before: old.model, after: now.model });
  const before = new Map(old.cards.map((c) => [c.id, c]));
  const after = new Map(now.cards.map((c) => [c.id, c]));
  for (const [id, c] of before) {
    const n = after.get(id);
    if (!n) out.push({ what: i18n.t("card_removed"), before: cardText(c), after: "" });
    else if (cardText(c) !== cardText(n)) out.push({ what: i18n.t("card_changed"), before: cardText(c), after: cardText(n) });
  }
  for (const [id, c] of after) if (!before.has(id)) out.push({ what: i18n.t("card_added"), before: "", after: cardText(c) });
  for (const variant of ["as_is", "to_be"] as const) {
    const stages = new Set([...Object.keys(old.emotions[variant]), ...Object.keys(now.emotions[variant])]);
    for (const s of stages) {
      const [a, b] = [old.emotions[variant][s], now.emotions[variant][s]];
      if (a !== b) out.push({ what: `${i18n.t("emotion_curve")} (${i18n.t(variant)}), ${s}`, before: a == null ? "" : i18n.num(a), after: b == null ? "" : i18n.num(b) });
    }
  }
  const steps = (m: JourneyMap) => new Set(m.steps.map((s) => `${s.stage}: ${s.name}`));
  const [sa, sb] = [steps(old), steps(now)];
  for (const s of sa) if (!sb.has(s)) out.push({ what: i18n.t("steps"), before: s, after: "" });
  for (const s of sb) if (!sa.has(s)) out.push({ what: i18n.t("steps"), before: "", after: s });
  return out;
}

export function Compare(props: { version: number; current: number; old: JourneyMap; now: JourneyMap; i18n: I18n; close: () => void }) {
  const { i18n } = props;
  const list = changes(props.old, props.now, i18n);
  return html`<section class="compare" aria-labelledby="compare-title">
    <h2 id="compare-title">${i18n.t("compare_title", { a: props.version, b: props.current })}</h2>
    ${list.length === 0
      ? html`<p>${i18n.t("no_changes")}</p>`
      : html`<table>
          <thead><tr><th scope="col"></th><th scope="col">${i18n.t("version", { v: props.version })}</th><th scope="col">${i18n.t("version", { v: props.current })}</th></tr></thead>
          <tbody>${list.map((c) => html`<tr data-change=${c.what}><th scope="row">${c.what}</th><td>${c.before}</td><td>${c.after}</td></tr>`)}</tbody>
        </table>`}
    <button onClick=${props.close}>${i18n.t("close")}</button>
  </section>`;
}
