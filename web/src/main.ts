// The shell: session, project switcher, filters that apply to every view (kept in the URL so a
// view can be shared), language, and the views (the map at /, /maps/NAME, /admin).

import { h, render } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import "./style.css";
import { api, ApiError, setProject, setSession, setShare, type Definitions, type SessionInfo } from "./api";
import { I18n, initialLocale, rememberLocale, type Locale } from "./i18n";
import { Login } from "./views/login";
import { Admin } from "./views/admin";
import { Triggers } from "./views/triggers";
import { MapPage } from "./map/view";
import type { Filters } from "./map/figures";

const html = htm.bind(h);

/** The language switch of the bar; the choice is remembered for the next visit. */
function LanguageSelect(props: { i18n: I18n; locale: Locale; setLocale: (l: Locale) => void }) {
  return html`<label>${props.i18n.t("language")}
    <select name="locale" value=${props.locale} onChange=${(e: Event) => {
      const l = (e.target as HTMLSelectElement).value as Locale;
      rememberLocale(l);
      props.setLocale(l);
    }}>
      <option value="en">English</option>
      <option value="de">Deutsch</option>
    </select>
  </label>`;
}

function readUrl(): { path: string; project: string; filters: Filters } {
  const q = new URLSearchParams(location.search);
  const get = (k: string) => q.get(k) || undefined;
  return {
    path: location.pathname,
    project: q.get("project") || "default",
    filters: { from: get("from"), to: get("to"), persona: get("persona"), segment: get("segment"), b2b: q.get("b2b") === "1" },
  };
}

function writeUrl(path: string, project: string, f: Filters) {
  const q = new URLSearchParams();
  if (project !== "default") q.set("project", project);
  for (const k of ["from", "to", "persona", "segment"] as const) if (f[k]) q.set(k, f[k]!);
  if (f.b2b) q.set("b2b", "1");
  const url = `${path}${q.size ? `?${q}` : ""}`;
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
}

function App() {
  const [locale, setLocale] = useState<Locale>(initialLocale());
  const i18n = new I18n(locale);
  const [session, setSess] = useState<SessionInfo | null | undefined>(undefined);
  const [url, setUrl] = useState(readUrl());
  const [defs, setDefs] = useState<Definitions>({ segments: [], personas: [] });

  useEffect(() => {
    document.documentElement.lang = locale;
  }, [locale]);
  useEffect(() => {
    api
      .session()
      .then((s) => {
        setSession(s);
        setSess(s);
      })
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) setSess(null);
        else setSess(null);
      });
    const onPop = () => setUrl(readUrl());
    addEventListener("popstate", onPop);
    return () => removeEventListener("popstate", onPop);
  }, []);
  setProject(url.project);
  useEffect(() => {
    if (session) api.definitions().then(setDefs).catch(() => setDefs({ segments: [], personas: [] }));
  }, [session, url.project]);

  if (session === undefined) return html`<p aria-busy="true">…</p>`;
  if (session === null)
    return html`<${Login} i18n=${i18n} done=${(s: SessionInfo) => {
      setSession(s);
      setSess(s);
    }} />`;

  const go = (path: string, project = url.project, filters = url.filters) => {
    writeUrl(path, project, filters);
    setUrl({ path, project, filters });
  };
  const setFilter = (k: keyof Filters, v: string | boolean) => go(url.path, url.project, { ...url.filters, [k]: v || undefined });
  const logout = async () => {
    await api.logout().catch(() => {});
    setSession(null);
    setSess(null);
  };
  const mapName = url.path.startsWith("/maps/") ? decodeURIComponent(url.path.slice(6)) : "default";
  const isAdmin = session.user.role === "admin";

  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header class="shell">
      <nav aria-label="Itinera">
        <a href="/" class="brand" onClick=${(e: Event) => (e.preventDefault(), go("/"))}>Itinera</a>
        <a href="/" aria-current=${url.path !== "/admin" && url.path !== "/triggers" ? "page" : null} onClick=${(e: Event) => (e.preventDefault(), go("/"))}>${i18n.t("map")}</a>
        <a href="/triggers" aria-current=${url.path === "/triggers" ? "page" : null} onClick=${(e: Event) => (e.preventDefault(), go("/triggers"))}>${i18n.t("triggers")}</a>
        ${isAdmin
          ? html`<a href="/admin" aria-current=${url.path === "/admin" ? "page" : null} onClick=${(e: Event) => (e.preventDefault(), go("/admin"))}>${i18n.t("admin")}</a>`
          : null}
      </nav>
      <form class="filters" aria-label="Filters" onSubmit=${(e: Event) => e.preventDefault()}>
        <label>${i18n.t("project")}
          <select name="project" value=${url.project} onChange=${(e: Event) => go(url.path, (e.target as HTMLSelectElement).value)}>
            ${session.projects.map((p) => html`<option value=${p}>${p}</option>`)}
          </select>
        </label>
        <label>${i18n.t("from")}<input type="date" name="from" value=${url.filters.from ?? ""} onChange=${(e: Event) => setFilter("from", (e.target as HTMLInputElement).value)} /></label>
        <label>${i18n.t("to")}<input type="date" name="to" value=${url.filters.to ?? ""} onChange=${(e: Event) => setFilter("to", (e.target as HTMLInputElement).value)} /></label>
        <label>${i18n.t("persona")}
          <select name="persona" value=${url.filters.persona ?? ""} onChange=${(e: Event) => setFilter("persona", (e.target as HTMLSelectElement).value)}>
            <option value="">${i18n.t("everyone")}</option>
            ${defs.personas.map((p) => html`<option value=${p.name}>${p.name}</option>`)}
          </select>
        </label>
        <label>${i18n.t("segment")}
          <select name="segment" value=${url.filters.segment ?? ""} onChange=${(e: Event) => setFilter("segment", (e.target as HTMLSelectElement).value)}>
            <option value="">${i18n.t("everyone")}</option>
            ${defs.segments.map((s) => html`<option value=${s.name}>${s.name}</option>`)}
          </select>
        </label>
        <label><input type="checkbox" name="b2b" checked=${!!url.filters.b2b} onChange=${(e: Event) => setFilter("b2b", (e.target as HTMLInputElement).checked)} /> ${i18n.t("b2b")}</label>
        <${LanguageSelect} i18n=${i18n} locale=${locale} setLocale=${setLocale} />
      </form>
      <div class="who">
        <span>${session.user.email} (${session.user.role})</span>
        <button onClick=${logout}>${i18n.t("logout")}</button>
      </div>
    </header>
    <main id="main">
      ${url.path === "/admin" && isAdmin
        ? html`<${Admin} i18n=${i18n} project=${url.project} />`
        : url.path === "/triggers"
        ? html`<${Triggers} key=${url.project} i18n=${i18n} project=${url.project} canEdit=${session.user.role !== "viewer"} />`
        : html`<${MapPage} key=${`${url.project}/${mapName}`} session=${session} i18n=${i18n} filters=${url.filters} name=${mapName} project=${url.project} />`}
    </main>
  `;
}

/** A map shown through a share link (`/share/SECRET`): no login, read-only, no filters. */
function Shared(props: { secret: string }) {
  const [locale, setLocale] = useState<Locale>(initialLocale());
  const i18n = new I18n(locale);
  const [what, setWhat] = useState<{ project: string; name: string; expires_at_ms: number } | null | undefined>(undefined);
  useEffect(() => {
    setShare(props.secret);
    api.shared().then(setWhat).catch(() => setWhat(null));
  }, [props.secret]);
  useEffect(() => {
    document.documentElement.lang = locale;
  }, [locale]);
  if (what === undefined) return html`<p aria-busy="true">…</p>`;
  if (what === null) return html`<main class="login"><p role="alert" class="error">${i18n.t("share_gone")}</p></main>`;
  const reader: SessionInfo = { user: { id: 0, email: "", role: "viewer", created_at: "" }, csrf: "", projects: [what.project], expires_at_ms: what.expires_at_ms };
  return html`
    <header class="shell">
      <nav aria-label="Itinera"><span class="brand">Itinera</span> <span>${i18n.t("shared_title")} · ${i18n.t("until", { t: i18n.dateTime(what.expires_at_ms) })}</span></nav>
      <form class="filters" aria-label="Filters" onSubmit=${(e: Event) => e.preventDefault()}>
        <${LanguageSelect} i18n=${i18n} locale=${locale} setLocale=${setLocale} />
      </form>
    </header>
    <main id="main"><${MapPage} session=${reader} i18n=${i18n} filters=${{}} name=${what.name} project=${what.project} shared=${true} /></main>
  `;
}

const shareSecret = location.pathname.startsWith("/share/") ? decodeURIComponent(location.pathname.slice(7)) : "";
render(shareSecret ? html`<${Shared} secret=${shareSecret} />` : html`<${App} />`, document.getElementById("app")!);
