// What a map is about, edited by editors: title, description, the stage model (built-in or saved;
// the default map's model is the project's), the personas its curves are drawn for, the steps
// within stages and the touchpoints they are bound to, and the minimum answers for a measured
// score. Saved with the map, checked by the server (an error names the field).

import { h } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { api, type JourneyMap, type LaneKind } from "../api";

/** Kinds a lane can be (measured ones show figures; the others hold cards). */
const LANE_KINDS: LaneKind[] = ["actions", "thoughts", "pain_points", "opportunities", "backstage", "touchpoints", "emotions", "metrics"];
import type { I18n } from "../i18n";

const html = htm.bind(h);

type Pattern = string | string[] | { regex: string };
interface Conjunction { event?: Pattern; channel?: Pattern; touchpoint?: Pattern; kind?: Pattern; where?: unknown }

/** One condition in the typed form: a bare event name, `field=value`, `field~regex`. */
function condition(field: string, p: Pattern): string | null {
  if (typeof p === "string") return field === "event" ? p : `${field}=${p}`;
  if (!Array.isArray(p) && typeof p.regex === "string") return `${field}~${p.regex}`;
  return null;
}

/** A selector in the typed form the server parses (`Product Viewed`, `kind=page|Store Visit`,
 *  `channel=email&kind=track`); what that form cannot say is shown as JSON. */
export function selectorText(sel: unknown): string {
  if (typeof sel === "string") return sel;
  const s = sel as { any?: Conjunction[] } & Conjunction;
  const alternatives = s.any ?? [s];
  const parts: string[] = [];
  for (const c of alternatives) {
    if (c.where) return JSON.stringify(sel);
    const conds: string[] = [];
    for (const field of ["event", "channel", "touchpoint", "kind"] as const) {
      const p = c[field];
      if (p === undefined) continue;
      const text = condition(field, p);
      if (text === null) return JSON.stringify(sel);
      conds.push(text);
    }
    parts.push(conds.join("&"));
  }
  return parts.join("|");
}
function selectorValue(text: string): unknown {
  const t = text.trim();
  if (t.startsWith("{")) {
    try {
      return JSON.parse(t);
    } catch {
      return t;
    }
  }
  return t;
}

let nextStep = 0;

export function Settings(props: {
  map: JourneyMap;
  stages: string[];
  personas: string[];
  change: (f: (m: JourneyMap) => void) => void;
  i18n: I18n;
}) {
  const { map, i18n } = props;
  const [models, setModels] = useState<{ name: string; builtin: boolean; stages: string[] }[]>([]);
  useEffect(() => {
    api.models().then(setModels).catch(() => setModels([]));
  }, []);
  const model = models.find((m) => m.name === map.model);
  const stages = model?.stages ?? props.stages;
  return html`<section class="settings" aria-labelledby="settings-title">
    <h2 id="settings-title">${i18n.t("settings")}</h2>
    <div class="settings-grid">
      <label>${i18n.t("title")}<input name="title" value=${map.title}
        onChange=${(e: Event) => props.change((m) => (m.title = (e.target as HTMLInputElement).value))} /></label>
      <label>${i18n.t("description")}<textarea name="description" rows="2" value=${map.description}
        onChange=${(e: Event) => props.change((m) => (m.description = (e.target as HTMLTextAreaElement).value))}></textarea></label>
      <label>${i18n.t("model")}
        <select name="model" value=${map.model} onChange=${(e: Event) => {
          const name = (e.target as HTMLSelectElement).value;
          const next = models.find((m) => m.name === name)?.stages ?? [];
          // cards, steps and typed emotions of stages the new model lacks would not validate
          props.change((m) => {
            m.model = name;
            m.cards = m.cards.filter((c) => next.includes(c.stage));
            m.steps = m.steps.filter((s) => next.includes(s.stage));
            for (const v of ["as_is", "to_be"] as const)
              for (const s of Object.keys(m.emotions[v])) if (!next.includes(s)) delete m.emotions[v][s];
          });
        }}>
          ${models.map((m) => html`<option value=${m.name}>${m.name}${m.builtin ? "" : ` (${i18n.t("saved_model")})`}: ${m.stages.join(" › ")}</option>`)}
        </select>
      </label>
      <label>${i18n.t("min_answers")}<input type="number" min="1" name="min_answers" value=${map.min_answers}
        onChange=${(e: Event) => props.change((m) => (m.min_answers = Math.max(1, Number((e.target as HTMLInputElement).value) || 1)))} /></label>
    </div>
    <fieldset>
      <legend>${i18n.t("map_personas")}</legend>
      ${props.personas.map(
        (p) => html`<label class="check"><input type="checkbox" name="persona" value=${p} checked=${map.personas.includes(p)}
          disabled=${!map.personas.includes(p) && map.personas.length >= 5}
          onChange=${(e: Event) =>
            props.change((m) => {
              m.personas = (e.target as HTMLInputElement).checked ? [...m.personas, p] : m.personas.filter((x) => x !== p);
            })} /> ${p}</label>`,
      )}
    </fieldset>
    <table class="lanes-editor">
      <caption>${i18n.t("lanes")}</caption>
      <thead><tr><th scope="col">${i18n.t("lane_title")}</th><th scope="col">${i18n.t("lane_kind")}</th><th scope="col"></th></tr></thead>
      <tbody>
        ${map.lanes.map(
          (l, i) => html`<tr data-lane-row=${l.id}>
            <td><input aria-label=${`${i18n.t("lane_title")} ${i + 1}`} value=${l.title}
              onChange=${(e: Event) => props.change((m) => (m.lanes[i].title = (e.target as HTMLInputElement).value))} /></td>
            <td>${l.kind.replace("_", " ")}</td>
            <td>
              <button aria-label=${`${i18n.t("move_up")}: ${l.title}`} disabled=${i === 0}
                onClick=${() => props.change((m) => m.lanes.splice(i - 1, 0, m.lanes.splice(i, 1)[0]))}>↑</button>
              <button aria-label=${`${i18n.t("move_down")}: ${l.title}`} disabled=${i === map.lanes.length - 1}
                onClick=${() => props.change((m) => m.lanes.splice(i + 1, 0, m.lanes.splice(i, 1)[0]))}>↓</button>
              <button aria-label=${`${i18n.t("delete")}: ${l.title}`}
                onClick=${() =>
                  props.change((m) => {
                    m.lanes.splice(i, 1);
                    // its cards go with it: a card must name a lane of the map
                    m.cards = m.cards.filter((c) => c.lane !== l.id);
                  })}>×</button>
            </td>
          </tr>`,
        )}
      </tbody>
    </table>
    <p>
      <label>${i18n.t("lane_kind")}
        <select name="new-lane-kind">
          ${LANE_KINDS.map((k) => html`<option value=${k}>${k.replace("_", " ")}</option>`)}
        </select>
      </label>
      <button data-action="add-lane" onClick=${(e: Event) => {
        const kind = ((e.target as HTMLElement).parentElement?.querySelector("select[name=new-lane-kind]") as HTMLSelectElement).value as LaneKind;
        props.change((m) => m.lanes.push({ id: `l${Date.now().toString(36)}${nextStep++}`, kind, title: i18n.t("new_lane") }));
      }}>${i18n.t("add_lane")}</button>
    </p>
    <table class="steps-editor">
      <caption>${i18n.t("steps")}</caption>
      <thead><tr><th scope="col">${i18n.t("stage")}</th><th scope="col">${i18n.t("step_name")}</th><th scope="col">${i18n.t("step_selector")}</th><th scope="col"></th></tr></thead>
      <tbody>
        ${map.steps.map(
          (s, i) => html`<tr data-step-row=${s.id}>
            <td><select aria-label=${`${i18n.t("stage")} ${i + 1}`} value=${s.stage}
              onChange=${(e: Event) => props.change((m) => (m.steps[i].stage = (e.target as HTMLSelectElement).value))}>
              ${stages.map((st) => html`<option value=${st}>${st}</option>`)}
            </select></td>
            <td><input aria-label=${`${i18n.t("step_name")} ${i + 1}`} value=${s.name}
              onChange=${(e: Event) => props.change((m) => (m.steps[i].name = (e.target as HTMLInputElement).value))} /></td>
            <td><input aria-label=${`${i18n.t("step_selector")} ${i + 1}`} value=${selectorText(s.selector)} size="30"
              onChange=${(e: Event) => props.change((m) => (m.steps[i].selector = selectorValue((e.target as HTMLInputElement).value)))} /></td>
            <td><button aria-label=${`${i18n.t("delete")}: ${s.name}`} onClick=${() =>
              props.change((m) => {
                m.steps.splice(i, 1);
                m.cards.forEach((c) => {
                  if (c.step === s.id) delete c.step;
                });
              })}>×</button></td>
          </tr>`,
        )}
      </tbody>
    </table>
    <button data-action="add-step" onClick=${() =>
      props.change((m) => m.steps.push({ id: `s${Date.now().toString(36)}${nextStep++}`, stage: stages[0], name: i18n.t("new_step"), selector: "" }))}>
      ${i18n.t("add_step")}
    </button>
    <p class="definition">${i18n.t("selector_help")}</p>
  </section>`;
}
