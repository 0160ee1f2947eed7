// The login form: inputs named email and password; errors are announced.

import { h } from "preact";
import { useState } from "preact/hooks";
import htm from "htm";
import { api, type SessionInfo } from "../api";
import type { I18n } from "../i18n";

const html = htm.bind(h);

export function Login(props: { i18n: I18n; done: (s: SessionInfo) => void }) {
  const { i18n } = props;
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.target as HTMLFormElement);
    setBusy(true);
    setError("");
    try {
      props.done(await api.login(String(form.get("email")), String(form.get("password"))));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title">${i18n.t("login_title")}</h1>
      <label>${i18n.t("email")}<input name="email" type="email" autocomplete="username" required /></label>
      <label>${i18n.t("password")}<input name="password" type="password" autocomplete="current-password" required /></label>
      ${error ? html`<p role="alert" class="error">${error}</p>` : null}
      <button class="primary" type="submit" disabled=${busy}>${i18n.t("login")}</button>
    </form>
  </main>`;
}
