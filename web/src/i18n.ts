// English and German: the language comes from the browser unless the user chose one (kept in
// localStorage); numbers, shares, durations and dates are formatted for it.

export type Locale = "en" | "de";

const en = {
  app: "Itinera",
  login_title: "Log in to Itinera",
  email: "E-mail",
  password: "Password",
  login: "Log in",
  logout: "Log out",
  project: "Project",
  from: "From",
  to: "To",
  persona: "Persona",
  segment: "Segment",
  everyone: "Everyone",
  language: "Language",
  map: "Journey map",
  admin: "Users and keys",
  as_is: "As-is",
  to_be: "To-be",
  variant: "Journey",
  save: "Save",
  saved: "Saved version {v}",
  unsaved: "Unsaved changes",
  versions: "Versions",
  restore: "Restore",
  compare: "Compare with current",
  compare_title: "Version {a} and version {b} side by side",
  no_changes: "No differences.",
  card_added: "Card added",
  card_removed: "Card removed",
  card_changed: "Card changed",
  title: "Title",
  close: "Close",
  saved_by: "Saved by",
  saved_at: "Saved at",
  version: "Version {v}",
  current: "current",
  export_json: "Export JSON",
  export_svg: "Export SVG",
  export_png: "Export PNG",
  export_pdf: "Export PDF",
  as_of: "Figures as of {t}",
  refreshing: "Refreshing…",
  live: "Live",
  stage: "Stage",
  entered: "Entering",
  next_conversion: "To next stage",
  drop_off: "Drop-off",
  median_time: "Median time",
  p90_time: "p90 time",
  nps: "NPS",
  csat: "CSAT (top-2-box)",
  ces: "CES (5–7)",
  answers: "n = {n}",
  interval: "{lo} to {hi}",
  customers: "Customers (handoff)",
  handoff: "Handoff: buyer → customer",
  accounts: "Accounts (B2B buying groups)",
  b2b: "B2B accounts",
  add_card: "Add a card",
  delete_card: "Delete card",
  card_text: "Card text",
  owner: "Owner",
  status: "Status",
  due: "Due",
  flags: "Pain points flagged by the data",
  no_flags: "Nothing flagged for these filters.",
  accept: "Accept",
  dismiss: "Dismiss",
  accepted: "accepted",
  dismissed: "dismissed",
  flag_drop: "{p} of those entering {s} do not go on: the largest drop-off of this model (median {m}).",
  flag_score: "NPS {v} in {s} (n = {n}): the lowest of the stages, {d} points below the overall {o}.",
  flag_time: "p90 time in {s} is {p90}, {x}× the median of {med}.",
  flag_cases: "{n} open cases from alerts on answers given in {s} (rules: {rules}).",
  emotion_curve: "Emotion curve",
  measured: "Measured ({who})",
  overall: "everyone",
  typed_as_is: "Typed as-is",
  typed_to_be: "Typed to-be",
  emotion_table: "Emotion curve as a table",
  too_few: "fewer than {n} answers",
  steps: "Steps",
  top_touchpoints: "Top touchpoints",
  top_channels: "Top channels",
  def_touches: "Persons who had this touchpoint (or channel) while in the stage — from entering it until entering a later one — and their share of those entering.",
  step_count: "Persons",
  touchpoints_measured: "Measured per step (steps bound to touchpoints)",
  definition: "Definition",
  definitions: "What the figures mean",
  def_csat: "Share of answers 4–5 on the 1–5 scale (top-2-box), with its interval; the mean and distribution are in /api/v1/scores.",
  def_ces: "Share of answers 5–7 on the 1–7 scale (“it was easy”), with its interval.",
  def_entered: "Persons whose rule for this stage matched in the period.",
  def_next: "Reached the next stage / reached this one.",
  def_drop: "1 − conversion to the next stage.",
  def_time: "From entering this stage to entering a later one, for those who went on.",
  def_nps: "% promoters (9–10) − % detractors (0–6); passives count in n. Interval: {c} % confidence.",
  def_customers: "Persons who reached the purchase stage: the buyer journey turns into the customer journey.",
  def_step: "Persons who did this step's touchpoints in journey order (a funnel over the map's steps).",
  def_emotion: "The mean answer's place on the scale, −2 … +2, per stage, with the mean's 95 % interval as a band; hidden below the map's minimum n.",
  viewer_note: "You can read this map; editors change it.",
  shared_note: "A shared map: read-only, with live figures.",
  share: "Share",
  share_note: "A link that shows this map with its live figures to anyone who has it, read-only, without a login, until it expires or is revoked.",
  expires_in: "Works for",
  make_link: "Make a link",
  until: "until {t}",
  shared_title: "Shared journey map",
  share_gone: "This share link has expired or was revoked.",
  conflict: "Someone saved this map meanwhile. Reload to see their version.",
  users: "Users",
  role: "Role",
  create: "Create",
  delete: "Delete",
  keys: "Write keys and tokens",
  kind: "Kind",
  prefix: "Prefix",
  label: "Label",
  scope: "Scope",
  revoke: "Revoke",
  revoked: "revoked",
  secret_once: "Copy it now; it is not shown again:",
  new_write_key: "New write key",
  new_token: "New token",
  not_found: "Not found",
  error: "Error",
  none: "–",
};
export type Key = keyof typeof en;

const de: Record<Key, string> = {
  app: "Itinera",
  login_title: "Bei Itinera anmelden",
  email: "E-Mail",
  password: "Passwort",
  login: "Anmelden",
  logout: "Abmelden",
  project: "Projekt",
  from: "Von",
  to: "Bis",
  persona: "Persona",
  segment: "Segment",
  everyone: "Alle",
  language: "Sprache",
  map: "Journey Map",
  admin: "Benutzer und Schlüssel",
  as_is: "Ist",
  to_be: "Soll",
  variant: "Journey",
  save: "Speichern",
  saved: "Version {v} gespeichert",
  unsaved: "Ungespeicherte Änderungen",
  versions: "Versionen",
  restore: "Wiederherstellen",
  compare: "Mit aktueller vergleichen",
  compare_title: "Version {a} und Version {b} nebeneinander",
  no_changes: "Keine Unterschiede.",
  card_added: "Karte hinzugefügt",
  card_removed: "Karte entfernt",
  card_changed: "Karte geändert",
  title: "Titel",
  close: "Schließen",
  saved_by: "Gespeichert von",
  saved_at: "Gespeichert am",
  version: "Version {v}",
  current: "aktuell",
  export_json: "Als JSON exportieren",
  export_svg: "Als SVG exportieren",
  export_png: "Als PNG exportieren",
  export_pdf: "Als PDF exportieren",
  as_of: "Zahlen vom {t}",
  refreshing: "Wird aktualisiert …",
  live: "Live",
  stage: "Phase",
  entered: "Eintritte",
  next_conversion: "Zur nächsten Phase",
  drop_off: "Abbruch",
  median_time: "Median-Dauer",
  p90_time: "p90-Dauer",
  nps: "NPS",
  csat: "CSAT (Top-2-Box)",
  ces: "CES (5–7)",
  answers: "n = {n}",
  interval: "{lo} bis {hi}",
  customers: "Kunden (Übergabe)",
  handoff: "Übergabe: Käufer → Kunde",
  accounts: "Accounts (B2B-Buying-Groups)",
  b2b: "B2B-Accounts",
  add_card: "Karte hinzufügen",
  delete_card: "Karte löschen",
  card_text: "Text der Karte",
  owner: "Verantwortlich",
  status: "Status",
  due: "Fällig",
  flags: "Von den Daten markierte Schmerzpunkte",
  no_flags: "Für diese Filter ist nichts markiert.",
  accept: "Übernehmen",
  dismiss: "Verwerfen",
  accepted: "übernommen",
  dismissed: "verworfen",
  flag_drop: "{p} der Eintritte in {s} gehen nicht weiter: der größte Abbruch dieses Modells (Median {m}).",
  flag_score: "NPS {v} in {s} (n = {n}): der niedrigste der Phasen, {d} Punkte unter dem Gesamtwert {o}.",
  flag_time: "Die p90-Dauer in {s} beträgt {p90}, das {x}-Fache des Medians von {med}.",
  flag_cases: "{n} offene Fälle aus Alerts zu Antworten in {s} (Regeln: {rules}).",
  emotion_curve: "Emotionskurve",
  measured: "Gemessen ({who})",
  overall: "alle",
  typed_as_is: "Eingetragen (Ist)",
  typed_to_be: "Eingetragen (Soll)",
  emotion_table: "Emotionskurve als Tabelle",
  too_few: "weniger als {n} Antworten",
  steps: "Schritte",
  top_touchpoints: "Häufigste Touchpoints",
  top_channels: "Häufigste Kanäle",
  def_touches: "Personen, die diesen Touchpoint (oder Kanal) hatten, während sie in der Phase waren — vom Eintritt bis zum Eintritt in eine spätere — und ihr Anteil an den Eintritten.",
  step_count: "Personen",
  touchpoints_measured: "Gemessen je Schritt (Schritte an Touchpoints gebunden)",
  definition: "Definition",
  definitions: "Was die Zahlen bedeuten",
  def_csat: "Anteil der Antworten 4–5 auf der Skala 1–5 (Top-2-Box), mit Intervall; Mittelwert und Verteilung liefert /api/v1/scores.",
  def_ces: "Anteil der Antworten 5–7 auf der Skala 1–7 („es war einfach“), mit Intervall.",
  def_entered: "Personen, deren Regel für diese Phase im Zeitraum zutraf.",
  def_next: "Nächste Phase erreicht / diese Phase erreicht.",
  def_drop: "1 − Konversion zur nächsten Phase.",
  def_time: "Vom Eintritt in diese Phase bis zum Eintritt in eine spätere, für alle, die weitergingen.",
  def_nps: "% Promotoren (9–10) − % Kritiker (0–6); Passive zählen in n. Intervall: {c} % Konfidenz.",
  def_customers: "Personen, die die Kaufphase erreichten: Hier wird die Buyer Journey zur Customer Journey.",
  def_step: "Personen, die die Touchpoints dieses Schritts in Journey-Reihenfolge hatten (ein Funnel über die Schritte der Map).",
  def_emotion: "Lage der mittleren Antwort auf der Skala, −2 … +2, je Phase, mit dem 95-%-Intervall des Mittelwerts als Band; unter dem Mindest-n der Map ausgeblendet.",
  viewer_note: "Sie können diese Map lesen; Bearbeiter ändern sie.",
  shared_note: "Eine geteilte Map: nur lesbar, mit Live-Zahlen.",
  share: "Teilen",
  share_note: "Ein Link, der diese Map mit ihren Live-Zahlen jedem zeigt, der ihn hat – nur lesbar, ohne Anmeldung, bis er abläuft oder widerrufen wird.",
  expires_in: "Gültig für",
  make_link: "Link erzeugen",
  until: "bis {t}",
  shared_title: "Geteilte Journey Map",
  share_gone: "Dieser Link ist abgelaufen oder wurde widerrufen.",
  conflict: "Jemand hat diese Map inzwischen gespeichert. Laden Sie neu, um die Version zu sehen.",
  users: "Benutzer",
  role: "Rolle",
  create: "Anlegen",
  delete: "Löschen",
  keys: "Write Keys und Tokens",
  kind: "Art",
  prefix: "Präfix",
  label: "Bezeichnung",
  scope: "Umfang",
  revoke: "Widerrufen",
  revoked: "widerrufen",
  secret_once: "Jetzt kopieren; es wird nicht noch einmal angezeigt:",
  new_write_key: "Neuer Write Key",
  new_token: "Neues Token",
  not_found: "Nicht gefunden",
  error: "Fehler",
  none: "–",
};

const dictionaries: Record<Locale, Record<Key, string>> = { en, de };

export function initialLocale(): Locale {
  const chosen = localStorage.getItem("itinera.locale");
  if (chosen === "en" || chosen === "de") return chosen;
  for (const l of navigator.languages ?? [navigator.language]) {
    if (l.toLowerCase().startsWith("de")) return "de";
    if (l.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

export function rememberLocale(l: Locale) {
  localStorage.setItem("itinera.locale", l);
}

/** Text and formatters of one locale. */
export class I18n {
  private nf: Intl.NumberFormat;
  private pf: Intl.NumberFormat;
  private df: Intl.DateTimeFormat;
  constructor(public locale: Locale) {
    const tag = locale === "de" ? "de-DE" : "en-GB";
    this.nf = new Intl.NumberFormat(tag, { maximumFractionDigits: 1 });
    this.pf = new Intl.NumberFormat(tag, { style: "percent", maximumFractionDigits: 1, minimumFractionDigits: 1 });
    this.df = new Intl.DateTimeFormat(tag, { dateStyle: "medium", timeStyle: "medium" });
  }
  t(key: Key, args: Record<string, string | number> = {}): string {
    let s = dictionaries[this.locale][key] ?? en[key];
    for (const [k, v] of Object.entries(args)) s = s.replace(`{${k}}`, String(v));
    return s;
  }
  num(v: number | null | undefined): string {
    return v == null || !Number.isFinite(v) ? this.t("none") : this.nf.format(v);
  }
  pct(v: number | null | undefined): string {
    return v == null || !Number.isFinite(v) ? this.t("none") : this.pf.format(v);
  }
  /** Seconds as the largest sensible unit: 45 s, 21 min, 5.2 h, 32.9 d. */
  duration(seconds: number | null | undefined): string {
    if (seconds == null || !Number.isFinite(seconds)) return this.t("none");
    const units: [number, string, string][] = [
      [86400, "d", "T"],
      [3600, "h", "Std."],
      [60, "min", "Min."],
      [1, "s", "Sek."],
    ];
    for (const [size, enUnit, deUnit] of units) {
      if (seconds >= size || size === 1) {
        return `${this.nf.format(seconds / size)} ${this.locale === "de" ? deUnit : enUnit}`;
      }
    }
    return this.t("none");
  }
  dateTime(ms: number): string {
    return this.df.format(new Date(ms));
  }
}
