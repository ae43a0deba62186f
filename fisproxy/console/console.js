// The fisproxy console: the FIS API, the Chaos API and the report of the proxy that serves it,
// in the browser. Plain JavaScript, no library, nothing loaded from elsewhere (the page's
// Content-Security-Policy allows this origin only). Every request goes to this origin with the
// control API's token when it needs one (typed in, or passed as `#token=...`, kept for this
// tab only); state changes send JSON, as the control API requires. Text from the API is only
// ever set as text, never parsed as HTML.
"use strict";

const POLL_MS = 2000;
const state = { token: sessionStorage.getItem("fisproxy-token") || "", chosen: null, views: {} };
const ENDED = ["completed", "stopped", "failed", "cancelled"];

// ---- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined || method !== "GET") {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  const response = await fetch(path, init);
  if (response.status === 403 || response.status === 401) {
    showLogin();
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).message || message; } catch (e) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

const enc = encodeURIComponent;

// ---- small DOM helpers ----------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function replace(el, ...children) { el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined)); }

function when(t) {
  if (t === undefined || t === null) return "-";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function badge(status) { return h("span", { class: "state " + status, "data-state": status }, status); }

function showError(e) {
  const box = document.getElementById("error");
  if (!e) { box.hidden = true; return; }
  box.hidden = false;
  box.textContent = e.message || String(e);
}

function showLogin() { document.getElementById("login").hidden = false; }

// ---- header: health and the safety lever ---------------------------------------------

async function refreshHeader() {
  const health = await api("GET", "/_fisproxy/health");
  document.getElementById("health").textContent = "version " + health.version + (health.store ? ", store " + health.store : "");
  const lever = (await api("GET", "/safetyLevers/default")).safetyLever;
  const engaged = lever.state.status === "engaged";
  replace(document.getElementById("lever"),
    h("span", {}, "Safety lever: "), badge(lever.state.status), " ",
    h("button", {
      class: engaged ? "go" : "danger", id: "lever-button",
      onclick: () => act(() => api("PATCH", "/safetyLevers/default/state", {
        state: { status: engaged ? "disengaged" : "engaged", reason: engaged ? "Disengaged from the console" : "Engaged from the console" },
      })),
    }, engaged ? "Disengage" : "Engage (stops every experiment)"));
}

// ---- experiments ----------------------------------------------------------------------

async function refreshExperiments() {
  const list = (await api("GET", "/experiments")).experiments || [];
  list.sort((a, b) => (b.creationTime || 0) - (a.creationTime || 0));
  const body = document.querySelector("#experiments tbody");
  replace(body, list.slice(0, 50).map((e) => h("tr", {
    class: "pick" + (e.id === state.chosen ? " chosen" : ""), "data-experiment": e.id,
    onclick: () => { state.chosen = e.id; refreshDetail(); refreshExperiments(); },
  }, h("td", {}, h("code", {}, e.id)), h("td", {}, e.experimentTemplateId || "-"),
     h("td", {}, badge(e.state.status)), h("td", {}, when(e.creationTime)))));
  if (!list.length) replace(body, h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No experiments yet.")));
}

async function refreshDetail() {
  const pane = document.getElementById("detail");
  if (!state.chosen) return;
  const id = state.chosen;
  const e = (await api("GET", "/experiments/" + enc(id))).experiment;
  const active = ["pending", "initiating", "running"].includes(e.state.status);
  const targets = (await api("GET", "/experiments/" + enc(id) + "/resolvedTargets")).resolvedTargets || [];
  // An ended experiment's report changes no more once its last calls are in: read it a few times, then keep it.
  let view = state.views[id];
  if (!view || !ENDED.includes(e.state.status) || view.reads < 3) {
    try {
      const fresh = await api("GET", "/_fisproxy/experiments/" + enc(id) + "/report?format=console");
      view = state.views[id] = { ...fresh, reads: ENDED.includes(e.state.status) ? (view ? view.reads : 0) + 1 : 0 };
    } catch (err) { view = null; }
  }
  if (state.chosen !== id) return;
  replace(pane,
    h("h2", {}, "Experiment ", h("code", {}, e.id), " ", badge(e.state.status)),
    h("div", { class: "muted" }, e.state.reason || ""),
    h("div", { class: "bar" },
      h("button", { class: "danger", id: "stop", disabled: !active, onclick: () => act(() => api("DELETE", "/experiments/" + enc(id))) }, "Stop"),
      h("button", { onclick: () => openReport(id, "html") }, "Report (HTML)"),
      h("button", { onclick: () => openReport(id, "pdf") }, "Report (PDF)"),
      reportState(e)),
    h("div", { class: "muted" }, "Template ", e.experimentTemplateId || "-", " · started ", when(e.startTime),
      e.endTime ? " · ended " + when(e.endTime) : " · running"),
    view ? h("img", { class: "chart", alt: "timeline of the actions", src: view.charts.timeline }) : null,
    h("h3", {}, "Actions"), actionsTable(e, view),
    h("h3", {}, "Resolved targets"), targetsList(targets),
    h("h3", {}, "Calls under the experiment (live)"), liveCounts(view),
    view ? view.charts.operations.map((src, i) => h("img", { class: "chart", alt: "operation " + (i + 1), src })) : null);
}

function reportState(e) {
  const r = e.experimentReport;
  if (!r || !r.state) return null;
  const arn = (r.s3Reports || []).map((s) => s.arn).join(", ");
  return h("span", { class: "muted" }, "FIS report: ", badge(r.state.status), " ", arn || r.state.reason || "");
}

function actionsTable(e, view) {
  const rows = Object.entries(e.actions || {}).map(([name, a]) => {
    const effects = view ? (view.report.actions.find((x) => x.name === name) || {}).effects || [] : [];
    return h("tr", {},
      h("td", {}, name), h("td", {}, h("code", {}, a.actionId)), h("td", {}, badge(a.state.status)),
      h("td", {}, when(a.startTime)), h("td", {}, a.endTime ? when(a.endTime) : "-"),
      h("td", {}, effects.length ? h("ul", { class: "compact" }, effects.map((f) => h("li", {}, f.effect + ": " + f.message))) : ""));
  });
  return h("table", {}, h("thead", {}, h("tr", {}, ["action", "id", "state", "start", "end", "did"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

function targetsList(targets) {
  if (!targets.length) return h("p", { class: "muted" }, "None (or not resolved yet).");
  return h("ul", { class: "compact" }, targets.map((t) =>
    h("li", {}, t.targetName + " (" + t.resourceType + "): ", h("code", {}, (t.targetInformation || {}).arn || ""))));
}

const COUNT_COLUMNS = [["requests", "requests"], ["faulted", "faulted"], ["calls", "calls"], ["retries", "retries"],
  ["succeeded", "succeeded"], ["failed", "failed"]];

function liveCounts(view) {
  if (!view) return h("p", { class: "muted" }, "No report yet.");
  const rows = [];
  for (const a of view.report.actions) {
    for (const r of a.rows) {
      rows.push(h("tr", { "data-operation": r.service + "." + (r.operation || "?") },
        h("td", {}, a.name), h("td", {}, r.service), h("td", {}, r.operation || "?"),
        COUNT_COLUMNS.map(([key]) => h("td", { class: "n", "data-count": key }, r[key])),
        h("td", { class: r.verdict === "retries held" ? "held" : (r.verdict.includes("failed") ? "failedv" : "muted") }, r.verdict)));
    }
  }
  if (!rows.length) return h("p", { class: "muted" }, "No matching calls yet.");
  return h("table", { id: "counts" },
    h("thead", {}, h("tr", {}, h("th", {}, "action"), h("th", {}, "service"), h("th", {}, "operation"),
      COUNT_COLUMNS.map(([, label]) => h("th", { class: "n" }, label)), h("th", {}, "verdict"))),
    h("tbody", {}, rows));
}

async function openReport(id, format) {
  const blob = await api("GET", "/_fisproxy/experiments/" + enc(id) + "/report?format=" + format).catch(showError);
  if (!blob) return;
  const url = URL.createObjectURL(blob);
  if (format === "pdf") {
    const a = h("a", { href: url, download: id + ".pdf" });
    document.body.append(a); a.click(); a.remove();
  } else {
    window.open(url, "_blank", "noopener");
  }
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---- templates ------------------------------------------------------------------------

async function refreshTemplates() {
  const list = (await api("GET", "/experimentTemplates")).experimentTemplates || [];
  const full = await Promise.all(list.slice(0, 50).map((t) =>
    api("GET", "/experimentTemplates/" + enc(t.id)).then((r) => r.experimentTemplate)));
  const box = document.getElementById("templates");
  replace(box, full.map((t) => h("div", { class: "template", "data-template": t.id },
    h("div", { class: "head" },
      h("span", {}, h("code", {}, t.id), " ", (t.tags || {}).Name || t.description || ""),
      h("button", { class: "go", onclick: () => start(t.id) }, "Start")),
    h("ul", { class: "compact" },
      Object.entries(t.actions || {}).map(([name, a]) => h("li", {}, name + ": ", h("code", {}, a.actionId), " ",
        Object.entries(a.parameters || {}).map(([k, v]) => k + "=" + v).join(", "))),
      Object.entries(t.targets || {}).map(([name, target]) => h("li", { class: "muted" }, "target " + name + ": " + target.resourceType +
        " " + (target.resourceArns || []).join(", ") + " " + Object.entries(target.resourceTags || {}).map(([k, v]) => k + "=" + v).join(", ")))))));
  if (!full.length) replace(box, h("p", { class: "muted" }, "No templates. Create one with aws fis create-experiment-template."));
}

async function start(templateId) {
  await act(async () => {
    const token = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
    const e = (await api("POST", "/experiments", { experimentTemplateId: templateId, clientToken: token })).experiment;
    state.chosen = e.id;
  });
}

// ---- Chaos rules and proxies ----------------------------------------------------------

async function refreshChaos() {
  const faults = await api("GET", "/_localstack/chaos/faults");
  const box = document.getElementById("chaos");
  const editor = h("textarea", { rows: 3, id: "chaos-rules", "aria-label": "Chaos rules as JSON" }, JSON.stringify(faults));
  replace(box,
    faults.length ? h("ul", { class: "compact" }, faults.map((f) => h("li", {}, h("code", {}, JSON.stringify(f)))))
      : h("p", { class: "muted" }, "No Chaos API rules."),
    h("details", {}, h("summary", {}, "Edit"), editor,
      h("div", { class: "bar" },
        h("button", { onclick: () => act(() => api("POST", "/_localstack/chaos/faults", JSON.parse(editor.value))) }, "Replace the rules"),
        h("button", { class: "danger", onclick: () => act(() => api("POST", "/_localstack/chaos/faults", [])) }, "Remove all"))));
}

async function refreshProxies() {
  const proxies = (await api("GET", "/_fisproxy/proxies")).proxies || [];
  replace(document.querySelector("#proxies tbody"), proxies.map((p) => h("tr", {},
    h("td", {}, h("code", {}, p.id)),
    h("td", {}, Object.entries(p.placement || {}).map(([k, v]) => k + "=" + v).join(", ") || "-"),
    h("td", {}, p.store || "-"), h("td", {}, when(p.last_seen)))));
}

// ---- the loop -------------------------------------------------------------------------

async function act(change) {
  try {
    await change();
    showError(null);
  } catch (e) { showError(e); }
  await refresh();
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    await Promise.all([refreshHeader(), refreshExperiments(), refreshDetail()]);
    showError(null);
  } catch (e) {
    showError(e);
  } finally {
    refreshing = false;
  }
}

async function refreshSlow() {
  try { await Promise.all([refreshTemplates(), refreshChaos(), refreshProxies()]); } catch (e) { showError(e); }
}

function takeTokenFromUrl() {
  const found = new URLSearchParams(location.hash.slice(1)).get("token");
  if (found) {
    state.token = found;
    sessionStorage.setItem("fisproxy-token", found);
    history.replaceState(null, "", location.pathname);  // not left in the address bar or history
  }
}

document.getElementById("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token").value;
  sessionStorage.setItem("fisproxy-token", state.token);
  document.getElementById("login").hidden = true;
  refresh(); refreshSlow();
});

window.addEventListener("hashchange", () => { takeTokenFromUrl(); refresh(); refreshSlow(); });
takeTokenFromUrl();
refresh(); refreshSlow();
setInterval(refresh, POLL_MS);
setInterval(refreshSlow, POLL_MS * 5);
