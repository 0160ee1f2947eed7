// The journey map: stages as columns, lanes as rows, live figures in every stage and step cell,
// cards editors change in place, the emotion curve typed and measured, pain points flagged by
// the data, the buyer → customer handoff, versions and exports.

import { h } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import htm from "htm";
import { api, ApiError, type Card, type JourneyMap, type MapVersion, type MapView, type SessionInfo, type StageRow, type StageTouch, type MapShare } from "../api";
import type { I18n } from "../i18n";
import { loadFigures, scoreOf, type Figures, type Filters } from "./figures";
import { flagsOf, type Flag } from "./flags";
import { curvesOf, EmotionChart } from "./emotion";
import { StageFigures, Figure } from "./cells";
import { downloadJson, downloadPdf, downloadPng, downloadSvg } from "./export";
import { Compare } from "./compare";
import { Settings } from "./settings";

const html = htm.bind(h);
/** Figures refresh this often while the map is open. */
const LIVE_MS = 10_000;

let nextId = 0;
const newId = (prefix: string) => `${prefix}${Date.now().toString(36)}${(nextId++).toString(36)}`;

export function MapPage(props: {
  session: SessionInfo;
  i18n: I18n;
  filters: Filters;
  name: string;
  project: string;
  /** Shown through a share link: read-only, no versions, no JSON export. */
  shared?: boolean;
}) {
  const { i18n, filters } = props;
  const shared = !!props.shared;
  const canEdit = !shared && props.session.user.role !== "viewer";
  const [view, setView] = useState<MapView | null>(null);
  const [draft, setDraft] = useState<JourneyMap | null>(null);
  const [dirty, setDirty] = useState(false);
  const [fig, setFig] = useState<Figures | null>(null);
  const [status, setStatus] = useState("");
  const [error, setError] = useState("");
  const [variant, setVariant] = useState<"as_is" | "to_be">("as_is");
  const [versions, setVersions] = useState<MapVersion[] | null>(null);
  const [compared, setCompared] = useState<{ version: number; old: JourneyMap } | null>(null);
  const [sharing, setSharing] = useState(false);
  const [editing, setEditing] = useState(false);
  const [personaNames, setPersonaNames] = useState<string[]>([]);
  useEffect(() => {
    if (canEdit) api.definitions().then((d) => setPersonaNames(d.personas.map((p) => p.name))).catch(() => {});
  }, [canEdit, props.project]);
  const [refreshing, setRefreshing] = useState(false);

  const reload = async () => {
    setError("");
    try {
      const v = await api.map(props.name);
      setView(v);
      setDraft(structuredClone(v.map));
      setDirty(false);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    reload();
  }, [props.name, props.project]);

  // live figures: now, on every filter change, and every LIVE_MS
  const filterKey = JSON.stringify(filters);
  const figureKey = view ? `${view.version}|${JSON.stringify(view.map.steps)}|${view.map.model}|${view.map.personas.join(",")}` : "";
  useEffect(() => {
    if (!view) return;
    let stopped = false;
    const tick = async () => {
      setRefreshing(true);
      try {
        const f = await loadFigures(view, filters, shared);
        if (!stopped) setFig(f);
      } catch (e) {
        if (!stopped) setError((e as Error).message);
      } finally {
        if (!stopped) setRefreshing(false);
      }
    };
    tick();
    const timer = setInterval(tick, LIVE_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [figureKey, filterKey, props.project]);

  const flags = useMemo(() => (fig && draft ? flagsOf(fig, draft.min_answers, i18n) : []), [fig, draft?.min_answers, i18n.locale]);

  if (error && !view) return html`<p role="alert" class="error">${error}</p>`;
  if (!view || !draft) return html`<p aria-busy="true">…</p>`;

  const stages = view.model.stages.map((s) => s.name);
  const change = (f: (m: JourneyMap) => void) => {
    const next = structuredClone(draft);
    f(next);
    setDraft(next);
    setDirty(true);
    setStatus(i18n.t("unsaved"));
  };
  const save = async () => {
    setError("");
    try {
      const r = await api.saveMap(view.name, draft, view.version);
      setStatus(i18n.t("saved", { v: r.version }));
      const v = await api.map(view.name);
      setView(v);
      setDraft(structuredClone(v.map));
      setDirty(false);
      if (versions) setVersions(await api.versions(view.name));
    } catch (e) {
      setError(e instanceof ApiError && e.status === 409 ? i18n.t("conflict") : (e as Error).message);
    }
  };
  const showVersions = async () => setVersions(versions ? null : await api.versions(view.name));
  const compare = async (v: number) => setCompared({ version: v, old: await api.version(view.name, v) });
  const restore = async (v: number) => {
    const r = await api.restore(view.name, v);
    setStatus(i18n.t("saved", { v: r.version }));
    await reload();
    setVersions(await api.versions(view.name));
  };
  const decide = (flag: Flag, decision: "accepted" | "dismissed") =>
    change((m) => {
      m.flags = m.flags.filter((f) => f.key !== flag.key).concat([{ key: flag.key, decision }]);
      const lane = m.lanes.find((l) => l.kind === "pain_points");
      if (decision === "accepted" && lane && !m.cards.some((c) => c.from_flag === flag.key)) {
        m.cards.push({ id: newId("f"), lane: lane.id, stage: flag.stage, text: flag.reason, variant: "as_is", from_flag: flag.key });
      }
    });

  const purchase = view.model.purchase_stage ?? null;
  const rowOf = (s: string) => fig?.stages.stages.find((r) => r.stage === s);
  const curves = curvesOf(draft, stages, fig, i18n);

  return html`
    <section class="map" aria-labelledby="map-title">
      <header class="map-head">
        <div>
          <h1 id="map-title">${draft.title}</h1>
          <p class="muted">${draft.description}</p>
        </div>
        <div class="toolbar" role="toolbar" aria-label=${i18n.t("map")}>
          <fieldset class="segmented">
            <legend class="sr-only">${i18n.t("variant")}</legend>
            ${(["as_is", "to_be"] as const).map(
              (v) => html`<label><input type="radio" name="variant" value=${v} checked=${variant === v}
                onChange=${() => setVariant(v)} /> ${i18n.t(v)}</label>`,
            )}
          </fieldset>
          ${canEdit ? html`<button class="primary" onClick=${save} disabled=${!dirty} data-action="save">${i18n.t("save")}</button>` : null}
          ${shared ? null : html`<button onClick=${showVersions} aria-expanded=${!!versions}>${i18n.t("versions")}</button>`}
          ${canEdit ? html`<button onClick=${() => setEditing(!editing)} aria-expanded=${editing} data-action="settings">${i18n.t("settings")}</button>` : null}
          ${canEdit ? html`<button onClick=${() => setSharing(!sharing)} aria-expanded=${sharing}>${i18n.t("share")}</button>` : null}
          ${shared ? null : html`<button onClick=${() => downloadJson(view.name)}>${i18n.t("export_json")}</button>`}
          <button onClick=${() => downloadSvg(view.name)}>${i18n.t("export_svg")}</button>
          <button onClick=${() => downloadPng(view.name)}>${i18n.t("export_png")}</button>
          <button onClick=${() => downloadPdf(view.name, draft.title, fig ? i18n.t("as_of", { t: i18n.dateTime(fig.asOf) }) : "")}>${i18n.t("export_pdf")}</button>
        </div>
      </header>
      <p class="status" role="status" aria-live="polite">
        <span data-version=${view.version}>${i18n.t("version", { v: view.version })}</span>
        ${status ? ` · ${status}` : ""}
        ${" · "}<span class="live" data-as-of=${fig?.asOf ?? ""}>${refreshing && !fig ? i18n.t("refreshing") : fig ? i18n.t("as_of", { t: i18n.dateTime(fig.asOf) }) : ""}</span>
        ${canEdit ? null : html` · <em>${i18n.t(shared ? "shared_note" : "viewer_note")}</em>`}
      </p>
      ${error ? html`<p role="alert" class="error">${error}</p>` : null}
      ${versions
        ? html`<${Versions} versions=${versions} current=${view.version} canEdit=${canEdit} restore=${restore} compare=${compare} i18n=${i18n} />`
        : null}
      ${editing ? html`<${Settings} map=${draft} stages=${view.model.stages.map((s) => s.name)} personas=${personaNames} change=${change} i18n=${i18n} />` : null}
      ${sharing ? html`<${Sharing} name=${view.name} i18n=${i18n} />` : null}
      ${compared
        ? html`<${Compare} version=${compared.version} current=${view.version} old=${compared.old} now=${view.map} i18n=${i18n} close=${() => setCompared(null)} />`
        : null}
      <div class="map-scroll" id="map-export-root">
        <table class="map-grid">
          <caption class="sr-only">${draft.title}</caption>
          <thead>
            <tr>
              <th scope="col" class="lane-title">${i18n.t("stage")}</th>
              ${stages.map(
                (s) => html`<th scope="col" class=${s === purchase ? "stage handoff-stage" : "stage"} data-stage=${s}>
                  ${s}
                  ${s === purchase && fig
                    ? html`<div class="handoff" title=${i18n.t("def_customers")}>
                        ${i18n.t("handoff")}:${" "}
                        <span data-metric="customers" data-value=${fig.stages.customers}>${i18n.num(fig.stages.customers)}</span>
                      </div>`
                    : null}
                </th>`,
              )}
            </tr>
          </thead>
          <tbody>
            ${draft.lanes.map(
              (lane) => html`<tr class=${`lane lane-${lane.kind}`} data-lane=${lane.id}>
                <th scope="row" class="lane-title">${lane.title}</th>
                ${stages.map((s, i) => html`<td data-stage=${s} data-lane=${lane.id}>
                  ${lane.kind === "metrics"
                    ? rowOf(s)
                      ? html`<${StageFigures}
                          row=${rowOf(s)}
                          last=${i === stages.length - 1}
                          nps=${fig && scoreOf(fig.nps, s)}
                          csat=${fig && scoreOf(fig.csat, s)}
                          ces=${fig && scoreOf(fig.ces, s)}
                          accounts=${fig?.stages.accounts?.reached[i]}
                          coverage=${fig?.accounts?.by_stage.find((c) => c.stage === s)}
                          minAnswers=${draft.min_answers}
                          confidence=${0.95}
                          i18n=${i18n}
                        />`
                      : html`<span aria-busy="true">…</span>`
                    : lane.kind === "touchpoints"
                      ? html`<${Touches} row=${rowOf(s)} i18n=${i18n} />
                          <${Steps} map=${draft} stage=${s} fig=${fig} i18n=${i18n} />`
                      : lane.kind === "emotions"
                        ? html`<${EmotionCell} map=${draft} stage=${s} variant=${variant} canEdit=${canEdit} change=${change} i18n=${i18n} />`
                        : null}
                  <${Cards}
                    cards=${draft.cards.filter((c) => c.lane === lane.id && c.stage === s && (c.variant ?? "as_is") === variant)}
                    lane=${lane}
                    canEdit=${canEdit}
                    change=${change}
                    i18n=${i18n}
                  />
                  ${canEdit && lane.kind !== "metrics"
                    ? html`<button class="add" aria-label=${`${i18n.t("add_card")}: ${lane.title}, ${s}`}
                        onClick=${() => change((m) => m.cards.push({ id: newId("c"), lane: lane.id, stage: s, text: "…", variant }))}>+</button>`
                    : null}
                </td>`)}
              </tr>`,
            )}
          </tbody>
        </table>
      </div>
      <${Definitions} i18n=${i18n} />
      <${EmotionChart} stages=${stages} curves=${curves} i18n=${i18n} />
      <${Flags} flags=${flags} map=${draft} canEdit=${canEdit} decide=${decide} i18n=${i18n} />
    </section>
  `;
}

/** Share links of the map: make one (7, 30 or 90 days), see and revoke the live ones. */
function Sharing(props: { name: string; i18n: I18n }) {
  const { i18n } = props;
  const [links, setLinks] = useState<MapShare[]>([]);
  const [made, setMade] = useState("");
  const [days, setDays] = useState("7d");
  const load = () => api.shares(props.name).then(setLinks);
  useEffect(() => {
    load();
  }, [props.name]);
  return html`<section class="sharing" aria-label=${i18n.t("share")}>
    <p>${i18n.t("share_note")}</p>
    <label>${i18n.t("expires_in")}
      <select name="expires_in" value=${days} onChange=${(e: Event) => setDays((e.target as HTMLSelectElement).value)}>
        ${["7d", "30d", "90d"].map((d) => html`<option value=${d}>${d}</option>`)}
      </select>
    </label>
    <button data-action="make-share" onClick=${async () => {
      setMade((await api.createShare(props.name, days)).url);
      load();
    }}>${i18n.t("make_link")}</button>
    ${made ? html`<p role="status"><label>${i18n.t("secret_once")} <input readonly size="70" value=${made} data-share-url /></label></p>` : null}
    <ul>
      ${links.map(
        (l) => html`<li data-share=${l.id}>
          <code>${l.prefix}…</code> ${l.created_by} · ${i18n.t("until", { t: i18n.dateTime(l.expires_at_ms) })}
          ${l.revoked_at
            ? html` · <em>${i18n.t("revoked")}</em>`
            : html` <button onClick=${async () => {
                await api.revokeShare(props.name, l.id);
                load();
              }}>${i18n.t("revoke")}</button>`}
        </li>`,
      )}
    </ul>
  </section>`;
}

/** What every figure of the map means, in words (also on each figure as its title). */
function Definitions(props: { i18n: I18n }) {
  const { i18n } = props;
  const rows: [string, string][] = [
    [i18n.t("entered"), i18n.t("def_entered")],
    [i18n.t("next_conversion"), i18n.t("def_next")],
    [i18n.t("drop_off"), i18n.t("def_drop")],
    [`${i18n.t("median_time")}, ${i18n.t("p90_time")}`, i18n.t("def_time")],
    [i18n.t("nps"), i18n.t("def_nps", { c: 95 })],
    [i18n.t("csat"), i18n.t("def_csat")],
    [i18n.t("ces"), i18n.t("def_ces")],
    [i18n.t("top_touchpoints"), i18n.t("def_touches")],
    [i18n.t("steps"), i18n.t("def_step")],
    [i18n.t("from_previous_step"), i18n.t("def_step_conversion")],
    [`${i18n.t("steps")}: ${i18n.t("nps")}`, i18n.t("def_step_score")],
    [i18n.t("customers"), i18n.t("def_customers")],
  ];
  return html`<details class="definitions">
    <summary>${i18n.t("definitions")}</summary>
    <dl>${rows.map(([term, def]) => html`<dt>${term}</dt><dd>${def}</dd>`)}</dl>
  </details>`;
}

/** The stage's measured top touchpoints and channels: persons while in the stage, and share. */
function Touches(props: { row: StageRow | undefined; i18n: I18n }) {
  const { row, i18n } = props;
  if (!row) return null;
  const list = (what: "touchpoints" | "channels", items: StageTouch[] | undefined) =>
    items?.length
      ? html`<ul class="touches" aria-label=${i18n.t(what === "touchpoints" ? "top_touchpoints" : "top_channels")} title=${i18n.t("def_touches")}>
          ${items.map(
            (t) => html`<li>
              <span class="figure-label">${t.key}</span>
              <span class="figure-value" data-metric=${`${what}.persons`} data-stage=${row.stage} data-key=${t.key} data-value=${t.persons}>${i18n.num(t.persons)}</span>
              <span class="muted" data-metric=${`${what}.share`} data-stage=${row.stage} data-key=${t.key} data-value=${t.share ?? ""}>${i18n.pct(t.share)}</span>
            </li>`,
          )}
        </ul>`
      : null;
  return html`${list("touchpoints", row.touchpoints)}${list("channels", row.channels)}`;
}

function Steps(props: { map: JourneyMap; stage: string; fig: Figures | null; i18n: I18n }) {
  const { i18n } = props;
  const steps = props.map.steps.filter((s) => s.stage === props.stage);
  if (!steps.length) return null;
  return html`<ul class="steps" title=${i18n.t("def_step")}>
    ${steps.map((s) => {
      const idx = props.map.steps.indexOf(s);
      const r = props.fig?.steps?.steps[idx];
      const warning = props.fig?.steps?.warnings?.find((w) => w.field === `steps[${idx}].match`);
      const nps = props.fig?.stepNps?.groups.find((g) => g.key === s.id);
      const enough = nps != null && nps.n >= props.map.min_answers;
      return html`<li class="step" data-step=${s.id}>
        <${Figure} metric="count" step=${s.id} stage=${props.stage} value=${r?.count} text=${i18n.num(r?.count)} label=${s.name} />
        ${idx > 0 && r
          ? html`<${Figure} metric="conversion_from_previous" step=${s.id} stage=${props.stage} value=${r.conversion_from_previous}
                text=${i18n.pct(r.conversion_from_previous)} label=${i18n.t("from_previous_step")} title=${i18n.t("def_step_conversion")} />
              <${Figure} metric="dropped" step=${s.id} stage=${props.stage} value=${r.dropped}
                text=${i18n.num(r.dropped)} label=${i18n.t("drop_off")} title=${i18n.t("def_step_dropped")} />
              <${Figure} metric="median_seconds_from_previous" step=${s.id} stage=${props.stage} value=${r.median_seconds_from_previous}
                text=${i18n.duration(r.median_seconds_from_previous)} label=${i18n.t("median_time")} title=${i18n.t("def_step_time")} />
              <${Figure} metric="p90_seconds_from_previous" step=${s.id} stage=${props.stage} value=${r.p90_seconds_from_previous}
                text=${i18n.duration(r.p90_seconds_from_previous)} label=${i18n.t("p90_time")} title=${i18n.t("def_step_time")} />`
          : null}
        ${nps
          ? html`<div class="score" title=${i18n.t("def_step_score")}>
              <${Figure} metric="nps" score="nps" step=${s.id} stage=${props.stage} value=${nps.nps?.nps} text=${nps.nps ? i18n.num(nps.nps.nps) : i18n.t("none")} label=${i18n.t("nps")} />
              <span class="score-n" data-metric="n" data-score="nps" data-step=${s.id} data-value=${nps.n}>${i18n.t("answers", { n: nps.n })}</span>
              ${enough
                ? html`<${Figure} metric="emotion" score="nps" step=${s.id} stage=${props.stage} value=${nps.emotion} text=${i18n.num(nps.emotion)} label=${i18n.t("step_emotion")} title=${i18n.t("def_emotion")} />`
                : null}
            </div>`
          : null}
        ${warning ? html`<p class="warning" role="note" data-warning=${s.id}>⚠ ${warning.message}</p>` : null}
      </li>`;
    })}
  </ul>`;
}

function EmotionCell(props: {
  map: JourneyMap;
  stage: string;
  variant: "as_is" | "to_be";
  canEdit: boolean;
  change: (f: (m: JourneyMap) => void) => void;
  i18n: I18n;
}) {
  const v = props.map.emotions[props.variant][props.stage];
  const label = `${props.i18n.t(props.variant)}: ${props.stage}`;
  if (!props.canEdit) return html`<span class="typed-emotion">${v == null ? props.i18n.t("none") : props.i18n.num(v)}</span>`;
  return html`<label class="typed-emotion">
    <span class="sr-only">${label}</span>
    <input type="number" min="-2" max="2" step="0.5" value=${v ?? ""} aria-label=${label}
      onChange=${(e: Event) => {
        const raw = (e.target as HTMLInputElement).value;
        props.change((m) => {
          if (raw === "") delete m.emotions[props.variant][props.stage];
          else m.emotions[props.variant][props.stage] = Math.max(-2, Math.min(2, Number(raw)));
        });
      }} />
  </label>`;
}

function Cards(props: {
  cards: Card[];
  lane: { id: string; kind: string; title: string };
  canEdit: boolean;
  change: (f: (m: JourneyMap) => void) => void;
  i18n: I18n;
}) {
  const { i18n } = props;
  const edit = (id: string, f: (c: Card) => void) =>
    props.change((m) => {
      const c = m.cards.find((c) => c.id === id);
      if (c) f(c);
    });
  return html`${props.cards.map((c) =>
    props.canEdit
      ? html`<div class=${`card card-${props.lane.kind}`} data-card=${c.id}>
          <textarea aria-label=${i18n.t("card_text")} rows="2" value=${c.text}
            onChange=${(e: Event) => edit(c.id, (x) => (x.text = (e.target as HTMLTextAreaElement).value))}></textarea>
          ${props.lane.kind === "opportunities"
            ? html`<div class="card-meta">
                <input aria-label=${i18n.t("owner")} placeholder=${i18n.t("owner")} value=${c.owner ?? ""}
                  onChange=${(e: Event) => edit(c.id, (x) => (x.owner = (e.target as HTMLInputElement).value || undefined))} />
                <select aria-label=${i18n.t("status")} value=${c.status ?? "open"}
                  onChange=${(e: Event) => edit(c.id, (x) => (x.status = (e.target as HTMLSelectElement).value as Card["status"]))}>
                  ${["open", "in_progress", "done", "dropped"].map((s) => html`<option value=${s}>${s.replace("_", " ")}</option>`)}
                </select>
                <input type="date" aria-label=${i18n.t("due")} value=${c.due ?? ""}
                  onChange=${(e: Event) => edit(c.id, (x) => (x.due = (e.target as HTMLInputElement).value || undefined))} />
              </div>`
            : null}
          <button class="delete" aria-label=${i18n.t("delete_card")}
            onClick=${() => props.change((m) => (m.cards = m.cards.filter((x) => x.id !== c.id)))}>×</button>
        </div>`
      : html`<div class=${`card card-${props.lane.kind}`} data-card=${c.id}>
          <p>${c.text}</p>
          ${c.owner || c.status || c.due
            ? html`<p class="card-meta muted">${[c.owner, c.status?.replace("_", " "), c.due].filter(Boolean).join(" · ")}</p>`
            : null}
        </div>`,
  )}`;
}

function Flags(props: {
  flags: Flag[];
  map: JourneyMap;
  canEdit: boolean;
  decide: (f: Flag, d: "accepted" | "dismissed") => void;
  i18n: I18n;
}) {
  const { i18n } = props;
  return html`<section class="flags" aria-labelledby="flags-title">
    <h2 id="flags-title">${i18n.t("flags")}</h2>
    ${props.flags.length === 0 ? html`<p class="muted">${i18n.t("no_flags")}</p>` : null}
    <ul>
      ${props.flags.map((f) => {
        const decided = props.map.flags.find((d) => d.key === f.key)?.decision;
        return html`<li data-flag=${f.key} data-stage=${f.stage}>
          <strong>${f.stage}</strong>: ${f.reason}
          ${decided ? html` <em>(${i18n.t(decided)})</em>` : null}
          ${props.canEdit && !decided
            ? html` <button onClick=${() => props.decide(f, "accepted")}>${i18n.t("accept")}</button>
                <button onClick=${() => props.decide(f, "dismissed")}>${i18n.t("dismiss")}</button>`
            : null}
        </li>`;
      })}
    </ul>
  </section>`;
}

function Versions(props: {
  versions: MapVersion[];
  current: number;
  canEdit: boolean;
  restore: (v: number) => void;
  compare: (v: number) => void;
  i18n: I18n;
}) {
  const { i18n } = props;
  return html`<section class="versions" aria-label=${i18n.t("versions")}>
    <table>
      <thead><tr><th scope="col">${i18n.t("version", { v: "" })}</th><th scope="col">${i18n.t("saved_by")}</th><th scope="col">${i18n.t("saved_at")}</th><th scope="col"></th></tr></thead>
      <tbody>
        ${props.versions.map(
          (v) => html`<tr data-version-row=${v.version}>
            <td>${v.version}${v.version === props.current ? ` (${i18n.t("current")})` : ""}</td>
            <td>${v.saved_by}</td>
            <td>${v.saved_at} ${v.note}</td>
            <td>
              ${v.version !== props.current
                ? html`<button onClick=${() => props.compare(v.version)} data-compare=${v.version}>${i18n.t("compare")}</button>`
                : null}
              ${props.canEdit && v.version !== props.current
                ? html` <button onClick=${() => props.restore(v.version)} data-restore=${v.version}>${i18n.t("restore")}</button>`
                : null}
            </td>
          </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}
