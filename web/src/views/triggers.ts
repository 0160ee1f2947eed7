// Trigger rules of the current project: the list with each rule's state, switching a rule on or
// off, a dry run over the last 30 days, its latest firings and a form for a new rule. Viewers
// read; editors and admins change. Semantics: docs/triggers.md.

import { h } from "preact";
import { useState } from "preact/hooks";
import { useLoaded } from "./loaded";
import htm from "htm";
import { api, type DryRun, type Firing, type NamedTrigger, type TriggerAction, type TriggerRule } from "../api";
import type { I18n } from "../i18n";

const html = htm.bind(h);
const DAY = 86_400_000;

type WhenKind = "enters_stage" | "stalled_in_stage" | "event";
type ActionKind = "webhook" | "email" | "case" | "set_trait";

/** One line saying what a rule waits for. */
function describe(rule: TriggerRule, i18n: I18n): string {
  const w = rule.when;
  if ("enters_stage" in w) return i18n.t("when_enters", { stage: w.enters_stage.stage, model: w.enters_stage.model });
  if ("stalled_in_stage" in w)
    return i18n.t("when_stalled", { stage: w.stalled_in_stage.stage, model: w.stalled_in_stage.model, after: w.stalled_in_stage.after });
  return i18n.t("when_event", { event: typeof w.event.event === "string" ? w.event.event : JSON.stringify(w.event.event) });
}

function actionKind(a: TriggerAction): string {
  return Object.keys(a)[0];
}

export function Triggers(props: { i18n: I18n; project: string; canEdit: boolean }) {
  const { i18n } = props;
  const [rules, setRules] = useState<NamedTrigger[]>([]);
  const [models, setModels] = useState<{ name: string; stages: string[] }[]>([]);
  const [dry, setDry] = useState<{ name: string; result: DryRun } | null>(null);
  const [firings, setFirings] = useState<{ name: string; firings: Firing[] } | null>(null);
  const [when, setWhen] = useState<WhenKind>("enters_stage");
  const [action, setAction] = useState<ActionKind>("case");
  const [model, setModel] = useState("customer-journey");

  const { error, run } = useLoaded(async () => {
    setRules((await api.triggers()).rules);
    setModels(await api.models());
  }, props.project);
  const toggle = (r: NamedTrigger) => {
    const { name, since_ms: _since, ...rule } = r;
    return run(() => api.saveTrigger(name, { ...rule, enabled: !r.enabled }));
  };
  const dryRun = (name: string) =>
    run(async () => {
      const to = Date.now();
      setDry({ name, result: await api.dryRun({ name, from_ms: to - 30 * DAY, to_ms: to }) });
    });
  const showFirings = (name: string) => run(async () => setFirings({ name, firings: (await api.firings(name)).firings }));

  const create = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    const get = (k: string) => String(f.get(k) ?? "").trim();
    const whenBody =
      when === "event"
        ? { event: { event: get("event") } }
        : when === "stalled_in_stage"
          ? { stalled_in_stage: { model: get("model"), stage: get("stage"), after: get("after") } }
          : { enters_stage: { model: get("model"), stage: get("stage") } };
    const act: TriggerAction =
      action === "webhook"
        ? { webhook: { url: get("url"), secret: get("secret") } }
        : action === "email"
          ? { email: { subject: get("subject"), body: get("body") } }
          : action === "set_trait"
            ? { set_trait: { name: get("trait"), value: get("value") } }
            : { case: { title: get("title") } };
    const rule: TriggerRule = {
      when: whenBody,
      actions: [act],
      holdout_percent: Number(get("holdout") || 0),
      enabled: false,
      ...(get("persona") ? { persona: get("persona") } : {}),
    };
    run(() => api.saveTrigger(get("name"), rule));
  };
  const stages = models.find((m) => m.name === model)?.stages ?? [];

  return html`<section class="triggers">
    <h1>${i18n.t("triggers")}</h1>
    <p>${i18n.t("triggers_note")}</p>
    ${error ? html`<p role="alert" class="error">${error}</p>` : null}
    <table>
      <thead><tr>
        <th scope="col">${i18n.t("name")}</th><th scope="col">${i18n.t("when")}</th><th scope="col">${i18n.t("actions")}</th>
        <th scope="col">${i18n.t("holdout")}</th><th scope="col">${i18n.t("state")}</th><th scope="col"></th>
      </tr></thead>
      <tbody>
        ${rules.map(
          (r) => html`<tr data-trigger=${r.name}>
            <th scope="row">${r.name}</th>
            <td>${describe(r, i18n)}</td>
            <td>${r.actions.map(actionKind).join(", ")}</td>
            <td>${i18n.num(r.holdout_percent ?? 0)} %</td>
            <td data-state=${r.enabled ? "on" : "off"}>${r.enabled && r.since_ms ? i18n.t("on_since", { t: i18n.dateTime(r.since_ms) }) : i18n.t("off")}</td>
            <td>
              ${props.canEdit ? html`<button onClick=${() => toggle(r)}>${r.enabled ? i18n.t("switch_off") : i18n.t("switch_on")}</button> ` : null}
              <button onClick=${() => dryRun(r.name)}>${i18n.t("dry_run")}</button>
              <button onClick=${() => showFirings(r.name)}>${i18n.t("firings")}</button>
              ${props.canEdit ? html` <button onClick=${() => run(() => api.deleteTrigger(r.name))}>${i18n.t("delete")}</button>` : null}
            </td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${dry
      ? html`<div class="dry-run" role="status">
          <h2>${i18n.t("dry_run")}: ${dry.name}</h2>
          <p data-dry-persons=${dry.result.persons}>${i18n.t("dry_run_result", { n: i18n.num(dry.result.persons) })}</p>
          <table>
            <thead><tr><th scope="col">${i18n.t("person")}</th><th scope="col">${i18n.t("at")}</th><th scope="col">${i18n.t("because")}</th></tr></thead>
            <tbody>${dry.result.sample.map((p) => html`<tr><td>${p.person}</td><td>${i18n.dateTime(p.at_ms)}</td><td>${p.because}</td></tr>`)}</tbody>
          </table>
        </div>`
      : null}
    ${firings
      ? html`<div class="firings">
          <h2>${i18n.t("firings")}: ${firings.name}</h2>
          <table>
            <thead><tr><th scope="col">${i18n.t("person")}</th><th scope="col">${i18n.t("at")}</th><th scope="col">${i18n.t("because")}</th><th scope="col">${i18n.t("actions")}</th></tr></thead>
            <tbody>${firings.firings.map(
              (f) => html`<tr data-firing=${f.person}><td>${f.person}${f.held_out ? ` (${i18n.t("held_out")})` : ""}</td><td>${i18n.dateTime(f.at_ms)}</td><td>${f.because}</td>
                <td>${f.actions.map((a) => `${a.kind}: ${a.status}${a.last_error ? ` (${a.last_error})` : ""}`).join("; ")}</td></tr>`,
            )}</tbody>
          </table>
        </div>`
      : null}
    ${props.canEdit
      ? html`<form class="new-trigger" onSubmit=${create} aria-label=${i18n.t("new_trigger")}>
          <h2>${i18n.t("new_trigger")}</h2>
          <label>${i18n.t("name")}<input name="name" required pattern="[A-Za-z0-9_.\\-]+" /></label>
          <label>${i18n.t("when")}
            <select name="when" value=${when} onChange=${(e: Event) => setWhen((e.target as HTMLSelectElement).value as WhenKind)}>
              <option value="enters_stage">${i18n.t("enters_stage")}</option>
              <option value="stalled_in_stage">${i18n.t("stalled_in_stage")}</option>
              <option value="event">${i18n.t("does_event")}</option>
            </select>
          </label>
          ${when === "event"
            ? html`<label>${i18n.t("event")}<input name="event" required /></label>`
            : html`<label>${i18n.t("model")}
                  <select name="model" value=${model} onChange=${(e: Event) => setModel((e.target as HTMLSelectElement).value)}>
                    ${models.map((m) => html`<option value=${m.name}>${m.name}</option>`)}
                  </select>
                </label>
                <label>${i18n.t("stage")}<select name="stage">${stages.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
                ${when === "stalled_in_stage" ? html`<label>${i18n.t("after")}<input name="after" value="7d" required /></label>` : null}`}
          <label>${i18n.t("action")}
            <select name="action" value=${action} onChange=${(e: Event) => setAction((e.target as HTMLSelectElement).value as ActionKind)}>
              <option value="case">${i18n.t("action_case")}</option>
              <option value="email">${i18n.t("action_email")}</option>
              <option value="webhook">${i18n.t("action_webhook")}</option>
              <option value="set_trait">${i18n.t("action_set_trait")}</option>
            </select>
          </label>
          ${action === "webhook"
            ? html`<label>URL<input name="url" type="url" required /></label><label>${i18n.t("secret")}<input name="secret" /></label>`
            : action === "set_trait"
              ? html`<label>${i18n.t("trait")}<input name="trait" required pattern="[A-Za-z0-9_\-]+" value="welcomed" /></label>
                  <label>${i18n.t("value")}<input name="value" required value="yes" /></label>`
            : action === "email"
              ? html`<label>${i18n.t("subject")}<input name="subject" required value="Welcome, {{traits.first_name}}" /></label>
                  <label>${i18n.t("body")}<textarea name="body" required></textarea></label>`
              : html`<label>${i18n.t("case_title")}<input name="title" required value="Follow up with {{person}}" /></label>`}
          <label>${i18n.t("holdout")} (%)<input name="holdout" type="number" min="0" max="90" value="10" /></label>
          <button type="submit">${i18n.t("create")}</button>
          <p>${i18n.t("new_trigger_note")}</p>
        </form>`
      : null}
  </section>`;
}
