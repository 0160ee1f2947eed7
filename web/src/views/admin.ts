// Admins manage users (every project) and the current project's write keys and tokens.

import { h } from "preact";
import { useState } from "preact/hooks";
import { useLoaded } from "./loaded";
import htm from "htm";
import { api, type KeyInfo, type Role, type User } from "../api";
import type { I18n } from "../i18n";

const html = htm.bind(h);
const ROLES: Role[] = ["viewer", "editor", "admin"];

export function Admin(props: { i18n: I18n; project: string }) {
  const { i18n } = props;
  const [users, setUsers] = useState<User[]>([]);
  const [keys, setKeys] = useState<KeyInfo[]>([]);
  const [secret, setSecret] = useState("");
  const { error, run } = useLoaded(async () => {
    setUsers(await api.users());
    setKeys(await api.keys());
  }, props.project);
  const createUser = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    run(() => api.createUser(String(f.get("new-email")), f.get("new-role") as Role, String(f.get("new-password"))));
  };
  return html`<section class="admin">
    <h1>${i18n.t("admin")}</h1>
    ${error ? html`<p role="alert" class="error">${error}</p>` : null}
    <h2>${i18n.t("users")}</h2>
    <table>
      <thead><tr><th scope="col">${i18n.t("email")}</th><th scope="col">${i18n.t("role")}</th><th scope="col"></th></tr></thead>
      <tbody>
        ${users.map(
          (u) => html`<tr data-user=${u.email}>
            <td>${u.email}</td>
            <td><select aria-label=${`${i18n.t("role")}: ${u.email}`} value=${u.role}
              onChange=${(e: Event) => run(() => api.setRole(u.email, (e.target as HTMLSelectElement).value as Role))}>
              ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}
            </select></td>
            <td><button onClick=${() => run(() => api.deleteUser(u.email))}>${i18n.t("delete")}</button></td>
          </tr>`,
        )}
      </tbody>
    </table>
    <form class="inline" onSubmit=${createUser}>
      <label>${i18n.t("email")}<input name="new-email" type="email" required /></label>
      <label>${i18n.t("password")}<input name="new-password" type="password" minlength="10" required autocomplete="new-password" /></label>
      <label>${i18n.t("role")}<select name="new-role">${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}</select></label>
      <button type="submit">${i18n.t("create")}</button>
    </form>
    <h2>${i18n.t("keys")} (${props.project})</h2>
    ${secret ? html`<p role="status" class="secret">${i18n.t("secret_once")} <code>${secret}</code></p>` : null}
    <table>
      <thead><tr><th scope="col">${i18n.t("kind")}</th><th scope="col">${i18n.t("scope")}</th><th scope="col">${i18n.t("prefix")}</th><th scope="col">${i18n.t("label")}</th><th scope="col"></th></tr></thead>
      <tbody>
        ${keys.map(
          (k) => html`<tr>
            <td>${k.kind}</td><td>${k.scope ?? ""}</td><td><code>${k.prefix}…</code></td><td>${k.label}</td>
            <td>${k.revoked_at ? i18n.t("revoked") : html`<button onClick=${() => run(() => api.revokeKey(k.id))}>${i18n.t("revoke")}</button>`}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    <p>
      <button onClick=${() => run(async () => setSecret((await api.createKey("write", undefined, "")).secret))}>${i18n.t("new_write_key")}</button>
      ${["read", "edit", "admin"].map(
        (s) => html` <button onClick=${() => run(async () => setSecret((await api.createKey("token", s, "")).secret))}>${i18n.t("new_token")} (${s})</button>`,
      )}
    </p>
  </section>`;
}
