// The console page: a login with a token (kept in sessionStorage, sent as a bearer token
// on every API call) and five views drawn from the JSON API under /api/.
"use strict";

const state = {
  token: sessionStorage.getItem("strata-token"),
  who: null,
  tenant: sessionStorage.getItem("strata-tenant"),
  view: "tree",
  selected: null,
  branches: null,
  drawn: null,    // what the tree graph shows, to redraw only when it changes
  timer: null,
  server: [],     // samples of the page server's figures
};
const POLL_MS = 2000;
const STORAGE_POLL_MS = 10000;  // dry runs of deletes and checkpoint costs: not every 2 s
const KEEP_SAMPLES = 90;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const response = await fetch(`/api${path}`, {
    method,
    headers: { Authorization: `Bearer ${state.token}`,
               ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, data.error_description || response.statusText);
  }
  return data;
}

const enc = encodeURIComponent;
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "-");
const tenantPath = (rest) => `/tenants/${enc(state.tenant)}${rest}`;

function showError(error) {
  $("error").textContent = error ? `${error.message}` : "";
  if (error && error.status === 401) logout(error.message);
}

// --- login -------------------------------------------------------------------------

async function login(token) {
  state.token = token;
  try {
    state.who = await api("GET", "/whoami");
  } catch (error) {
    state.token = null;
    throw error;
  }
  sessionStorage.setItem("strata-token", token);
  const tenants = state.who.admin ? (await api("GET", "/tenants")).tenants.map((t) => t.tenant)
    : [state.who.tenant];
  const select = $("tenant");
  select.replaceChildren(...tenants.map((name) => new Option(name, name)));
  if (!tenants.includes(state.tenant)) state.tenant = tenants.includes("default") ? "default" : tenants[0];
  select.value = state.tenant;
  select.disabled = !state.who.admin;
  $("identity").textContent = state.who.admin ? "admin token"
    : `${state.who.scope} token of ${state.who.tenant}` +
      (state.who.branches ? `, limited to ${state.who.branches.join(", ")}` : "") +
      (state.who.read_only ? " (read-only)" : "");
  $("login-view").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  show(location.hash.slice(1) || "tree");
}

function logout(reason) {
  sessionStorage.removeItem("strata-token");
  state.token = null;
  state.who = null;
  clearInterval(state.timer);
  document.querySelectorAll("main > section").forEach((s) => { s.hidden = true; });
  $("login-view").hidden = false;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("login-error").textContent = reason || "";
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await login($("token").value.trim());
    $("token").value = "";
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});
$("logout").addEventListener("click", () => logout());
$("tenant").addEventListener("change", (event) => {
  state.tenant = event.target.value;
  sessionStorage.setItem("strata-tenant", state.tenant);
  state.selected = null;
  refresh();
});

// --- views -------------------------------------------------------------------------

const VIEWS = {
  tree: refreshTree, computes: refreshComputes, storage: refreshStorage,
  server: refreshServer, audit: refreshAudit,
};

function show(view) {
  if (!VIEWS[view]) view = "tree";
  state.view = view;
  if (location.hash !== `#${view}`) history.replaceState(null, "", `#${view}`);
  document.querySelectorAll("main > section").forEach((s) => {
    s.hidden = s.id !== `${view}-view`;
  });
  document.querySelectorAll("nav a").forEach((a) => {
    a.classList.toggle("active", a.dataset.view === view);
  });
  document.querySelectorAll(".tenant-name").forEach((s) => { s.textContent = state.tenant; });
  clearInterval(state.timer);
  refresh();
  if (view !== "audit") {
    state.timer = setInterval(refresh, view === "storage" ? STORAGE_POLL_MS : POLL_MS);
  }
}

async function refresh() {
  if (!state.token) return;
  document.querySelectorAll(".tenant-name").forEach((s) => { s.textContent = state.tenant; });
  try {
    await VIEWS[state.view]();
    showError(null);
  } catch (error) {
    showError(error);
  }
}

window.addEventListener("hashchange", () => { if (state.token) show(location.hash.slice(1)); });

// --- branches ----------------------------------------------------------------------

async function refreshTree() {
  const data = await api("GET", tenantPath("/branches"));
  const drawn = JSON.stringify([data.branches, state.selected, state.tenant,
                               Math.floor(data.now_us / 30e6)]);
  state.branches = data;
  if (drawn === state.drawn) return;  // unchanged: keep the graph (and what is clicked)
  state.drawn = drawn;
  Tree.draw($("tree-graph"), data, state.selected, select);
  fillPanel();
}

function select(name) {
  state.selected = name;
  $("action-result").textContent = "";
  state.drawn = null;
  Tree.draw($("tree-graph"), state.branches, state.selected, select);
  fillPanel();
}

function fillPanel() {
  const branch = state.branches?.branches.find((b) => b.name === state.selected);
  $("branch-panel").hidden = !branch;
  if (!branch) return;
  $("panel-name").textContent = branch.name;
  const fields = [
    ["parent", branch.parent || "- (root)"],
    ["forked", `${when(branch.created_at)} at LSN ${branch.branch_lsn}`],
    ["last write", `${when(branch.last_time)} (LSN ${branch.last_lsn})`],
    ["logical size", Charts.human(branch.logical_size, "B")],
    ["owned bytes", Charts.human(branch.owned_bytes, "B")],
    ["expires", branch.expires_at ? when(branch.expires_at) : "never"],
    ["lease", branch.lease_s ? `${branch.lease_s} s from each renewal (strata branch renew)` : "-"],
    ["protected", branch.protected ? "yes" : "no"],
    ["writer", branch.writer || "-"],
    ["compute", branch.compute || "none here"],
    ["checkpoints", branch.checkpoints.map((c) => `${c.name} (LSN ${c.lsn})`).join(", ") || "-"],
    ["children", branch.children.join(", ") || "-"],
  ];
  $("panel-fields").replaceChildren(...fields.flatMap(([label, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  }));
  const restore = $("restore-to");
  const keep = restore.value;
  const options = [new Option("reset to parent's newest", "")];
  for (const c of state.branches.checkpoints) {
    options.push(new Option(`checkpoint ${c.name} (${c.branch})`, c.name));
  }
  restore.replaceChildren(...options);
  if ([...restore.options].some((o) => o.value === keep)) restore.value = keep;
}

async function act(question, work, done) {
  if (question && !window.confirm(question)) return;
  $("action-result").textContent = "working…";
  try {
    const result = await work();
    $("action-result").textContent = done(result);
    await refreshTree();
  } catch (error) {
    $("action-result").textContent = error.message;
  }
}

$("fork-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("fork-name").value.trim(), ttl = $("fork-ttl").value.trim();
  act(`Fork ${state.selected} as ${name}, deleted after ${ttl}?`,
      () => api("POST", tenantPath("/branches"), { name, parent: state.selected, ttl }),
      (b) => { $("fork-name").value = ""; state.selected = b.name; return `forked ${b.name} at LSN ${b.branch_lsn}`; });
});

$("checkpoint-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("checkpoint-name").value.trim();
  act(`Checkpoint ${state.selected} as ${name}?`,
      () => api("POST", tenantPath("/checkpoints"), { branch: state.selected, name }),
      (c) => { $("checkpoint-name").value = ""; return `checkpoint ${c.name} at LSN ${c.lsn}`; });
});

$("restore-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const checkpoint = $("restore-to").value;
  const what = checkpoint ? `checkpoint ${checkpoint}` : "its parent's newest state";
  act(`Restore ${state.selected} to ${what}? Its compute restarts; its current state is kept only if it has children.`,
      () => api("POST", tenantPath(`/branches/${enc(state.selected)}/restore`),
                checkpoint ? { checkpoint } : {}),
      (b) => `${b.name} now at LSN ${b.branch_lsn}` + (b.preserved_as ? `; was kept as ${b.preserved_as}` : ""));
});

$("ttl-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const ttl = $("ttl-value").value.trim();
  act(`Set the TTL of ${state.selected} to ${ttl} from now?`,
      () => api("PATCH", tenantPath(`/branches/${enc(state.selected)}`), { ttl }),
      (b) => { $("ttl-value").value = ""; return `${b.name} expires ${when(b.expires_at)}`; });
});

$("delete-branch").addEventListener("click", async () => {
  const name = state.selected;
  const branch = state.branches.branches.find((b) => b.name === name);
  const flags = `?cascade=${branch.children.length ? "true" : "false"}&force=${branch.protected ? "true" : "false"}`;
  let plan;
  try {
    plan = await api("GET", tenantPath(`/branches/${enc(name)}/delete-plan${flags}`));
  } catch (error) {
    $("action-result").textContent = error.message;
    return;
  }
  const question = `Delete for good: branches ${plan.deleted.join(", ")}; checkpoints ` +
    `${plan.checkpoints.join(", ") || "none"}; frees ${Charts.human(plan.freed_bytes, "B")}?`;
  act(question, () => api("DELETE", tenantPath(`/branches/${enc(name)}${flags}`)),
      (d) => { state.selected = null; return `deleted ${d.deleted.join(", ")}`; });
});

// --- computes ----------------------------------------------------------------------

function cell(content, numeric) {
  const td = document.createElement("td");
  td.textContent = content;
  if (numeric) td.className = "num";
  return td;
}

async function refreshComputes() {
  const data = await api("GET", tenantPath("/computes"));
  $("computes-table").tBodies[0].replaceChildren(...data.computes.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.branch = c.branch;
    const timings = c.start_timings || {};
    const phases = Object.keys(timings).length
      ? Object.entries(timings).map(([k, v]) => `${k.replace(/_s$/, "")} ${v.toFixed(2)} s`).join(", ") : "-";
    tr.append(cell(c.branch), cell(c.status), cell(c.status === "running" ? c.clients : "-", true),
              cell(c.idle_s === null ? "-" : `${Math.round(c.idle_s)} s`, true),
              cell(c.started_at ? new Date(c.started_at * 1000).toLocaleString() : "-"),
              cell(c.cache_hit_ratio === null ? "-" : `${(c.cache_hit_ratio * 100).toFixed(0)} % of ${c.cache_lookups}`, true),
              cell(phases));
    tr.children[1].className = `state state-${c.status}`;
    return tr;
  }));
}

// --- storage -----------------------------------------------------------------------

const PALETTE = ["#3b6fd6", "#d08a0a", "#1f7a4d", "#7a3fd6", "#b42318", "#0f8a9d", "#8a6d3b"];
const HISTORY_LINES = 6;  // the branches with the most bytes, and the tenant's total

async function refreshStorage() {
  const [data, history] = await Promise.all([
    api("GET", tenantPath("/storage")),
    api("GET", tenantPath(`/storage/history?since=${enc($("storage-since").value.trim() || "7d")}`)),
  ]);
  const usage = data.usage;
  $("storage-summary").textContent =
    `stored ${Charts.human(usage.stored_bytes, "B")}` +
    (usage.max_storage ? ` of ${Charts.human(usage.max_storage, "B")}` : " (no quota)") +
    ` · layers ${Charts.human(usage.owned_bytes, "B")} · logical ${Charts.human(usage.logical_bytes, "B")}` +
    ` · ${usage.branches} branches · ${data.checkpoints.length} checkpoints`;
  Charts.bars($("storage-bars"), data.branches.map((b) => ({ label: b.name, value: b.owned_bytes })));
  $("storage-table").tBodies[0].replaceChildren(...data.branches.map((b) => {
    const tr = document.createElement("tr");
    tr.dataset.branch = b.name;
    const frees = b.delete ? Charts.human(b.delete.freed_bytes, "B")
      : b.name === "main" ? "- (only with its tenant)" : `- (${b.delete_refused || "not planned"})`;
    tr.append(cell(b.name), cell(Charts.human(b.logical_size, "B"), true),
              cell(Charts.human(b.owned_bytes, "B"), true),
              cell(Charts.human(b.history_bytes, "B"), true), cell(b.checkpoints.join(", ") || "-"),
              cell(frees, true),
              cell(b.delete ? [...b.delete.deleted, ...b.delete.checkpoints.map((c) => `◆${c}`)].join(", ") : "-"));
    return tr;
  }));
  $("checkpoint-table").tBodies[0].replaceChildren(...data.checkpoints.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.checkpoint = c.name;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "danger";
    button.textContent = "Delete…";
    button.addEventListener("click", () => deleteCheckpoint(c.name));
    const actions = document.createElement("td");
    actions.append(button);
    tr.append(cell(c.name), cell(c.branch || "-"), cell(String(c.lsn), true),
              cell(when(c.created_at)), cell(Charts.human(c.held_bytes, "B"), true),
              cell(Charts.human(c.reclaim_bytes, "B"), true), cell(c.statement || "-"), actions);
    return tr;
  }));
  drawStorageHistory(history);
}

function drawStorageHistory(history) {
  const samples = history.samples;
  const latest = samples.length ? samples[samples.length - 1].branches : [];
  const biggest = latest.slice().sort((a, b) => b.owned_bytes - a.owned_bytes)
    .slice(0, HISTORY_LINES).map((b) => b.name);
  const series = [{ label: "tenant stored", samples: samples.map((s) => [s.at_us / 1000, s.stored_bytes]) },
    ...biggest.map((name) => ({
      label: `${name} owned`,
      samples: samples.flatMap((s) => s.branches.filter((b) => b.name === name)
        .map((b) => [s.at_us / 1000, b.owned_bytes])),
    }))];
  const held = samples.map((s) => [s.at_us / 1000, s.checkpoints.reduce((a, c) => a + c.held_bytes, 0)]);
  Charts.lines($("storage-history"), "bytes over time", series, "B", PALETTE);
  Charts.lines($("checkpoint-history"), "held by checkpoints over time",
               [{ label: "all checkpoints", samples: held }], "B", PALETTE.slice(3));
  $("storage-history-note").textContent = samples.length
    ? `${samples.length} samples from ${when(samples[0].at)} to ${when(samples[samples.length - 1].at)}; ` +
      `the page server samples every ${Math.round(history.period_s / 60)} min and after each GC and compaction`
    : "no samples yet: the page server samples every few minutes and after each GC and compaction";
}

async function deleteCheckpoint(name) {
  let plan;
  try {
    plan = await api("GET", tenantPath(`/checkpoints/${enc(name)}/delete-plan`));
  } catch (error) {
    $("storage-result").textContent = error.message;
    return;
  }
  if (!window.confirm(`Delete checkpoint ${name}? Frees ${Charts.human(plan.freed_bytes, "B")} now ` +
                      `and ${Charts.human(plan.gc_bytes, "B")} at the next GC.`)) return;
  try {
    const done = await api("DELETE", tenantPath(`/checkpoints/${enc(name)}`));
    $("storage-result").textContent = `deleted checkpoint ${done.deleted}: frees ` +
      `${Charts.human(done.reclaim_bytes, "B")}`;
    await refreshStorage();
  } catch (error) {
    $("storage-result").textContent = error.message;
  }
}

$("storage-form").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });

// --- page server -------------------------------------------------------------------

function rate(samples, pick) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const [t0, a] = [samples[i - 1].t, pick(samples[i - 1])];
    const [t1, b] = [samples[i].t, pick(samples[i])];
    if (a !== undefined && b !== undefined && t1 > t0) out.push([t1, Math.max(b - a, 0) / ((t1 - t0) / 1000)]);
  }
  return out;
}

function latencyMs(samples, method) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1].f.rpc_seconds[method], b = samples[i].f.rpc_seconds[method];
    if (!a || !b) continue;
    const calls = b.count - a.count;
    out.push([samples[i].t, calls > 0 ? ((b.sum - a.sum) / calls) * 1000 : 0]);
  }
  return out;
}

async function refreshServer() {
  if (!state.who.admin) {
    $("server-address").textContent = "The page server's figures cover every tenant: log in with an admin token to see them.";
    $("server-charts").replaceChildren();
    return;
  }
  const data = await api("GET", "/metrics");
  state.server.push({ t: Date.now(), f: data.figures });
  state.server = state.server.slice(-KEEP_SAMPLES);
  $("server-address").textContent = `metrics of ${data.address}, every ${POLL_MS / 1000} s while this view is open`;
  const s = state.server;
  const total = (name) => (x) => x.f.totals[name];
  const gauge = (name) => s.map((x) => [x.t, x.f.gauges[name] ?? 0]);
  const sum = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);
  const charts = [
    ["ingest", rate(s, total("strata_ingest_bytes_total")), "B/s"],
    ["pages served", rate(s, total("strata_pages_served_total")), "/s"],
    ["GetPages latency (per request)", latencyMs(s, "PageService/GetPages.request"), "ms"],
    ["ingest latency (per batch)", latencyMs(s, "IngestService/Ingest.batch"), "ms"],
    ["layers", s.map((x) => [x.t, sum(x.f.layers)]), ""],
    ["layer bytes", s.map((x) => [x.t, sum(x.f.layer_bytes)]), "B"],
    ["upload backlog (log bytes not yet confirmed)", gauge("strata_log_pending_bytes"), "B"],
    ["uploads", rate(s, total("strata_upload_bytes_total")), "B/s"],
  ];
  const holder = $("server-charts");
  while (holder.children.length < charts.length) holder.appendChild(document.createElement("div"));
  charts.forEach(([title, samples, unit], i) => Charts.line(holder.children[i], title, samples, unit));
}

// --- audit -------------------------------------------------------------------------

async function refreshAudit() {
  const query = new URLSearchParams({ since: $("audit-since").value.trim(),
                                      action: $("audit-action").value.trim(),
                                      target: $("audit-target").value.trim(),
                                      tenant: state.tenant });
  const data = await api("GET", `/audit?${query}`);
  $("audit-table").tBodies[0].replaceChildren(...data.entries.slice().reverse().map((e) => {
    const tr = document.createElement("tr");
    tr.append(cell(new Date(e.at_us / 1000).toLocaleString()), cell(e.action), cell(e.tenant),
              cell(e.target || "-"), cell(e.token_id || "-"), cell(e.scope || "-"), cell(e.peer || "-"));
    return tr;
  }));
}

$("audit-form").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });

// --- start -------------------------------------------------------------------------

if (state.token) {
  login(state.token).catch((error) => logout(error.message));
} else {
  logout();
}
