// pixclass labeling UI: login, grid with filters and bulk tagging, image view with keyboard shortcuts,
// review (agreement, conflicts), class editing, import, upload and accounts for admins, background jobs. Plain ES modules, no build step.
import { api, qs, ApiError } from "./api.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return e;
};
const PAGE = 60;
const S = { me: null, ds: null, ids: [], items: [], offset: 0, selected: new Set(), selStart: null, pos: 0, image: null, counts: {},
            shownAt: 0, hiddenAt: 0, undo: [], checked: new Set(), search: "", polling: null, watch: null, followed: new Set(),
            saving: false, loading: false, nav: 0, claimChain: Promise.resolve(), back: null, watchNote: null, order: null, view: null, restoring: false, applied: {}, conflicts: [], hashAt: -Infinity, hashTimer: null,
            dsSeq: 0, dsPending: null, shown: new Set(), reorder: false };
const pct = (x) => (x === null || x === undefined ? "" : `${Math.round(x * 100)}%`);
const single = () => S.ds && !S.ds.multi;
const hier = () => S.ds && S.ds.task === "hierarchical";
const searchable = () => hier() || S.ds.classes.length > 10;  // past ten classes, digits cannot reach them all
// what the model suggests for an image: its stored suggestion (multi-label: the tags above their thresholds; binary:
// the class at the tuned threshold), else the top class
const suggested = (im) => (im.prediction ? im.prediction.labels || [im.prediction.label] : im.top.length ? [im.top[0].label] : []);
// hierarchical: the taxonomy node the model is sure of, when it is not a class itself, as a search ("clothes/"), so that
// the digits pick among the classes under it
// a hierarchical image opens on the branch the model is sure of, when the digits cannot reach every class anyway and
// the branch leaves some out (not a root above them all)
const NARROW_AT = 0.9;
const subtree = (im) => {
  const node = hier() && im.confident && im.confident.score >= NARROW_AT ? im.confident.node : null;
  const under = node && S.ds.classes.filter((c) => c.startsWith(`${node}/`)).length;
  return node && S.ds.classes.length > 10 && under && under < S.ds.classes.length ? `${node}/` : "";
};
const shown = () => S.ds.classes.filter((c) => c.toLowerCase().includes(S.search.toLowerCase())).slice(0, 50);

function show(view) {
  if (view !== "image") S.nav += 1;  // an image still loading must not bring the image view back (see openImage)
  if (S.view === "image" && view !== "image" && S.image && S.me && S.me.role !== "viewer") claimOp(S.image.id, "DELETE").catch(() => {});  // let others have it
  if (view === "image" && S.view !== "image") flash("#image-msg", "");  // "Saved ..." was about an image of the last visit
  S.view = view;
  for (const v of ["login", "grid", "image", "review", "classes", "jobs", "admin"]) $(`#${v}-view`).hidden = v !== view;
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === view));
  $("#topbar").hidden = view === "login";
  saveHash();
}
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
function flash(sel, text, bad = false) {
  const m = $(sel); m.textContent = text; m.className = bad ? "msg bad" : "msg";
}
function needDs() {  // a fresh workspace has no dataset: say what to do instead of failing on S.ds
  if (!S.ds) throw new Error("No dataset yet: import a folder or create an empty dataset (Data & users tab), or run `pixclass import DIR --name NAME`.");
  return S.ds;
}
async function dsReady() {  // the dataset the dropdown shows: an action right after switching waits for its details
  while (S.dsPending) await S.dsPending;
  return needDs();
}
async function guard(sel, fn) {
  try { return await fn(); } catch (e) {
    if (e instanceof ApiError && e.status === 401) { show("login"); return; }
    flash(sel, e.message, true);
  }
}

// ------------------------------------------------------------------ the place in the URL
// #ds=cloth&status=unlabeled&sort=queue:margin&offset=60&image=123: a reload (F5) or a shared link opens the same
// dataset, filters, grid page, tab and image. Replaced, never pushed: Back does not walk through hundreds of images.
const FIELDS = { status: "#f-status", class: "#f-label", annotator: "#f-annotator", predicted: "#f-predicted", min: "#f-min",
                 max: "#f-max", curation: "#f-excluded", review: "#f-review", sort: "#f-sort" };  // and conflicts, a checkbox
const initial = (e) => (e.options ? e.options[0].value : "");
function fields() {  // the filter inputs that differ from their defaults, by their names in the URL
  const f = {};
  for (const [k, sel] of Object.entries(FIELDS)) { const v = $(sel).value.trim(); if (v !== initial($(sel))) f[k] = v; }
  if ($("#f-conflicts").checked) f.conflicts = "1";
  return f;
}
function setFields(h) {  // the URL's filters and page into the inputs: a value no option has, or a confidence outside 0-1, is left out
  for (const [k, sel] of Object.entries(FIELDS)) {
    const e = $(sel), v = (h.get(k) || "").trim();
    const ok = e.options ? [...e.options].some((o) => o.value === v) : e.type !== "number" || v === "" || Number(v) >= 0 && Number(v) <= 1;
    e.value = ok ? v : initial(e);
  }
  $("#f-conflicts").checked = h.get("conflicts") === "1";
  const offset = /^\d+$/.test(h.get("offset") || "") ? Number(h.get("offset")) : 0;
  S.offset = Number.isSafeInteger(offset) ? offset - offset % PAGE : 0;
}
function saveHash() {  // at most four writes a second: browsers refuse a burst of them (a held arrow key)
  clearTimeout(S.hashTimer);
  if (!S.me || !S.view || S.view === "login" || S.restoring) return;  // the login form keeps the place it was asked for
  const wait = S.hashAt + 250 - performance.now();
  if (wait > 0) { S.hashTimer = setTimeout(saveHash, wait); return; }
  const h = new URLSearchParams(S.ds ? { ds: S.ds.name, ...S.applied } : {}), tab = S.view === "image" ? S.back : S.view;
  if (S.offset) h.set("offset", S.offset);
  if (tab && tab !== "grid") h.set("tab", tab);
  if (S.view === "image") h.set("image", S.image.id);
  const url = `${location.pathname}${location.search}${[...h].length ? `#${String(h).replaceAll("%3A", ":")}` : ""}`;
  if (url === `${location.pathname}${location.search}${location.hash}`) return;
  S.hashAt = performance.now();
  try { history.replaceState(history.state, "", url); } catch { /* refused all the same: the next change writes it */ }
}
async function restore(h) {  // after start(): the URL's tab or image where they still exist (selectDataset set the filters)
  const want = h.get("ds"), tab = h.get("tab");
  let id = /^\d+$/.test(h.get("image") || "") ? Number(h.get("image")) : null;
  if (want !== null && S.ds && S.ds.name !== want) {
    flash("#grid-msg", `There is no dataset "${want}" (any more): showing ${S.ds.name}.`, true); id = null;
  }
  if (S.offset && S.offset >= S.ids.length) { S.offset = Math.max(0, Math.ceil(S.ids.length / PAGE) - 1) * PAGE; await loadGrid(); }
  const button = ["review", "classes", "jobs", "admin"].includes(tab) ? $(`.tab[data-tab=${tab}]`) : null;
  if (id !== null && S.ds) {  // opened from the grid's list, or from the Review tab's conflicts
    const fromReview = tab === "review";
    if (fromReview) await openTab("review");
    const list = fromReview ? S.conflicts : S.ids, pos = list.indexOf(id);
    if (pos >= 0) { S.ids = list; S.back = fromReview ? "review" : null; await openImage(pos); return; }
    flash(fromReview ? "#review-msg" : "#grid-msg", `Image #${id} is no longer in this list (labeled or changed since?): ` +
          `showing the ${fromReview ? "conflicts" : "grid"} instead.`, true);
  } else if (button && !button.hidden) await openTab(tab);
}
window.addEventListener("hashchange", () => location.reload());  // a link pasted into this tab: open its place

// ------------------------------------------------------------------ login
async function start() {
  try { S.me = (await api("/api/auth/session")).user; } catch { S.me = null; }
  if (!S.me) { show("login"); return; }
  const h = new URLSearchParams(location.hash.slice(1));  // read before anything writes it (see saveHash)
  $("#whoami").textContent = `${S.me.name} (${S.me.role})`;
  document.querySelectorAll(".admin-only").forEach((b) => (b.hidden = S.me.role !== "admin"));
  document.querySelectorAll(".writer").forEach((b) => (b.hidden = S.me.role === "viewer"));  // they would get 403
  S.restoring = true;  // until its place is restored, the URL keeps asking for it (a reload meanwhile loses nothing)
  try {
    await loadDatasets(h.get("ds"), h);
    show("grid");
    pollJobs();
    await restore(h);
  } finally { S.restoring = false; saveHash(); }
}
async function loadDatasets(keep = null, h = null) {  // h: filters and page from the URL, for its dataset (or the default)
  const datasets = await api("/api/datasets");
  $("#dataset").replaceChildren(...datasets.map((d) => el("option", { value: d.name })));
  showCounts(datasets);
  const name = datasets.some((d) => d.name === keep) ? keep : datasets.length ? datasets[0].name : null;
  if (name) { $("#dataset").value = name; await selectDataset(name, !keep || keep === name ? h : null); return; }
  S.ds = null; S.ids = []; S.items = [];
  $("#grid").replaceChildren(); $("#count").textContent = ""; $("#page-info").textContent = "";
  $("#bulk-mode").hidden = true;
  flash("#grid-msg", S.me.role === "admin" ? "No dataset yet: import a folder or create an empty dataset in the Data & users tab."
    : "No dataset yet: an admin imports or creates one.", true);
}
function showCounts(datasets) {  // "name (labeled/images)" in the dataset dropdown
  for (const d of datasets) S.counts[d.name] = { labeled: d.labeled, images: d.images };
  for (const o of $("#dataset").options) {
    const c = S.counts[o.value];
    if (c) o.textContent = `${o.value} (${c.labeled}/${c.images})`;
  }
}
async function refreshCounts() { try { showCounts(await api("/api/datasets")); } catch { /* the next refresh will do */ } }
function bumpLabeled(before, after) {  // one image's labels changed from the image view: no round trip
  const c = S.counts[S.ds.name];
  if (c && !before.length !== !after.length) { c.labeled += after.length ? 1 : -1; showCounts([]); }
}
$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("/api/auth/login", { method: "POST", body: { name: $("#login-name").value, password: $("#login-password").value } });
    $("#login-error").textContent = "";
    await start();
  } catch (e) { $("#login-error").textContent = e.message; }
});
$("#logout").addEventListener("click", async () => {
  show("grid"); await S.claimChain;  // an image left open is given back first
  await api("/api/auth/logout", { method: "POST" }); location.reload();
});
document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => openTab(b.dataset.tab)));
// the grid first: an image opened from the new grid while the model list still loads stays open
$("#dataset").addEventListener("change", (ev) => { show("grid"); selectDataset(ev.target.value); });

async function openTab(tab) {
  show(tab);
  if (tab === "grid") await loadGrid();
  if (tab === "review") await guard("#review-msg", loadReview);
  if (tab === "classes") await guard("#classes-msg", renderClasses);
  if (tab === "jobs") await pollJobs();
  if (tab === "admin") await loadUsers();
}

async function selectDataset(name, h = null) {
  const seq = ++S.dsSeq, pending = api(`/api/datasets/${encodeURIComponent(name)}`);
  S.dsPending = pending.catch(() => {});
  let ds;
  try { ds = await pending; } finally { if (S.dsSeq === seq) S.dsPending = null; }
  if (S.dsSeq !== seq) return;  // another dataset was chosen meanwhile
  S.ds = ds;
  const opts = (first) => [el("option", { value: "" }, first), ...S.ds.classes.map((c) => el("option", { value: c }, c))];
  $("#f-label").replaceChildren(...opts("any class"));
  $("#f-predicted").replaceChildren(...opts("any prediction"));
  $("#bulk-class").replaceChildren(...S.ds.classes.map((c) => el("option", { value: c }, c)));
  $("#bulk-mode").hidden = !S.ds.multi || S.me.role === "viewer";
  exportLinks();
  $("#votes").value = S.ds.votes_per_image;
  S.selected.clear(); S.offset = 0; S.search = "";
  if (h) setFields(h);
  await Promise.all([loadGrid(), loadRuns()]);
}
function exportLinks() {  // Label Studio tasks and config; image links relative to its document root when given
  if (!S.ds) return;
  const base = `/api/datasets/${encodeURIComponent(S.ds.name)}/export/labelstudio`;
  const root = $("#export-root").value.trim();
  $("#export-ls").href = root ? `${base}?${qs({ document_root: root })}` : base;
  $("#export-ls-config").href = `${base}.xml`;
}
$("#export-root").addEventListener("input", exportLinks);
for (const a of ["#export-ls", "#export-ls-config"]) {  // fetched first: a refusal (say, a wrong root) is shown, not a cancelled download
  $(a).addEventListener("click", (ev) => { ev.preventDefault(); const from = ev.currentTarget; guard("#grid-msg", async () => {
    await dsReady();
    const res = await fetch(from.href, { headers: { "X-Requested-With": "pixclass" } });
    if (!res.ok) throw new Error(`Export refused: ${(await res.json().catch(() => ({}))).detail || res.statusText}`);
    const name = decodeURIComponent((res.headers.get("Content-Disposition") || "").match(/filename\*=UTF-8''([^;]+)/)?.[1] || "") || "tasks.json";
    const link = el("a", { href: URL.createObjectURL(await res.blob()), download: name });
    document.body.append(link); link.click(); link.remove(); setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    flash("#grid-msg", `Exported ${name}.`);
  }); });
}
async function loadAutotrain() {  // "N new labels since the last run", and the auto-retrain setting
  const a = await api(`/api/datasets/${encodeURIComponent(S.ds.name)}/autotrain`);
  $("#autotrain-every").value = a.every ?? "";
  $("#autotrain-info").textContent = `${plural(a.new_labels, "new label")} ${a.last_run ? "since the last run" : "(no run yet)"}` +
    (a.every ? `; retrains (linear) every ${a.every}` : "");
}

async function loadRuns() {  // the model select: the newest run serves unless an admin pins one
  const runs = (await api(`/api/runs?${qs({ dataset: S.ds.name })}`)).filter((r) => r.status === "done");
  const score = (m) => ["accuracy", "mAP", "hierarchical_f1"].map((k) => m[`val_${k}`]).find((v) => typeof v === "number");
  const when = (r) => new Date(`${r.created_at}Z`).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const label = (r) => `run ${r.id} · ${r.mode} · ${when(r)}${score(r.metrics) !== undefined ? ` · val ${pct(score(r.metrics))}` : ""}`;
  const newest = runs.length ? ` (run ${runs[0].id})` : " (none yet)";
  $("#serving-run").replaceChildren(el("option", { value: "" }, `newest${newest}`),
    ...runs.map((r) => el("option", { value: r.id }, `pin ${label(r)}`)));
  $("#serving-run").value = S.ds.pinned_run ?? "";
  $("#serving-run").disabled = S.me.role !== "admin";
  const linear = runs.find((r) => r.mode === "linear"), picks = [...$("#train-model").options].map((o) => o.value);
  if (S.trainModelFor !== S.ds.name) $("#train-model").value = picks.includes(linear?.model) ? linear.model : picks[0];  // a dataset opens on the backbone it was last trained on
  S.trainModelFor = S.ds.name;
}
$("#serving-run").addEventListener("change", (ev) => guard("#grid-msg", async () => {
  const v = ev.target.value;
  const res = await api(`/api/datasets/${encodeURIComponent(S.ds.name)}/serving-run`, { method: "PUT",
    body: { run_id: v === "" ? null : Number(v) } });
  S.ds = await api(`/api/datasets/${encodeURIComponent(S.ds.name)}`);
  flash("#grid-msg", (res.pinned_run ? `Run ${res.pinned_run} serves until you choose "newest" again.` :
        `The newest run serves${res.serving_run ? ` (run ${res.serving_run})` : ""}.`) +
        (res.prelabel_job ? ` Storing its suggestions for ${plural(res.missing_suggestions, "image")} that have none from it (job ${res.prelabel_job}).` : ""));
  if (res.prelabel_job) { S.watch = res.prelabel_job; S.watchNote = $("#grid-msg").textContent; pollJobs(); }  // kept when it ends
  else await loadGrid();
}));

// ------------------------------------------------------------------ grid
function filters() {
  const status = $("#f-status").value;
  return { unlabeled: status === "unlabeled", labeled: status === "labeled", origin: ["accepted", "manual"].includes(status) ? status : "",
           label: $("#f-label").value, annotator: $("#f-annotator").value.trim(),
           predicted: $("#f-predicted").value, min_conf: $("#f-min").value, max_conf: $("#f-max").value,
           excluded: $("#f-excluded").value, conflicts: $("#f-conflicts").checked, review: $("#f-review").value, sort: $("#f-sort").value };
}
async function loadGrid() {
  if (!S.ds) return;
  await guard("#grid-msg", async () => {
    const q = qs({ ...filters(), offset: S.offset, limit: PAGE }), applied = fields(), name = S.ds.name;
    const res = await api(`/api/datasets/${encodeURIComponent(name)}/images?${q}`);
    if (!S.ds || S.ds.name !== name) return;  // another dataset was chosen meanwhile
    if (S.ids.join() !== res.ids.join()) S.shown = new Set();  // a new list: what was shown of the last one may come again
    S.ids = res.ids; S.items = res.items; S.applied = applied; S.order = res.queue_strategy; S.reorder = false;
    saveHash();
    const asked = $("#f-sort").value.split(":")[1];
    $("#count").textContent = `${plural(res.total, "image")}` + (res.embedding_job
      ? ` · in random order until the images are embedded for diversity order (job ${res.embedding_job})`
      : res.queue_strategy && res.queue_strategy !== asked ? ` · ordered by ${res.queue_strategy} diversity: ${asked} needs a trained model` : "");
    if (res.embedding_job && S.watch !== res.embedding_job) { S.watch = res.embedding_job; pollJobs(); }
    $("#page-info").textContent = res.total ? `${S.offset + 1}-${Math.min(S.offset + PAGE, res.total)} of ${res.total}` : "";
    renderGrid();
    if (S.ds.classes.length && $("#grid-msg").textContent.includes("has no classes yet")) flash("#grid-msg", "");  // they exist now
    if (!S.ds.classes.length) flash("#grid-msg", S.me.role === "admin" ? "This dataset has no classes yet: create them in the Classes tab."
      : "This dataset has no classes yet: an admin creates them in the Classes tab.", true);
    await loadAutotrain();
  });
  refreshCounts();
}
function renderGrid() {
  $("#grid").replaceChildren(...S.items.map((it, i) => {
    const p = it.prediction;
    return el("div", { class: `card${S.selected.has(it.id) ? " selected" : ""}${it.conflict ? " conflict" : ""}${it.excluded ? " excluded" : ""}`,
                       "data-id": it.id },
      el("input", { type: "checkbox", class: "sel", "aria-label": `select ${it.id}`, checked: S.selected.has(it.id),
                    onchange: (ev) => { ev.target.checked ? S.selected.add(it.id) : S.selected.delete(it.id); updateSel(); } }),
      el("img", { src: `/api/images/${it.id}/thumb?size=160`, loading: "lazy", alt: `image ${it.id}`, onclick: () => { S.back = null; openImage(S.offset + i); } }),
      el("div", { class: "labels" }, it.labels.join(", ") || "—", it.accepted ? el("span", { class: "muted", title: "an accepted model suggestion" }, " · accepted") : ""),
      el("div", { class: "pred" }, p ? `model: ${(p.labels || [p.label]).join(", ") || "no tag"}${S.ds.multi ? "" : ` ${pct(p.score)}`}` : "no suggestion",
         it.agreement !== null ? ` · agree ${pct(it.agreement)}` : ""),
      it.claimed_by ? el("div", { class: "pred bad claimed" }, `${it.claimed_by} is labeling it`) : "");
  }));
  updateSel();
}
function updateSel() {
  S.selStart = S.selected.size ? (S.selStart ?? performance.now()) : null;  // a bulk edit's time: from the first pick
  const here = S.items.filter((it) => S.selected.has(it.id)).length;  // a selection spans pages: say so
  $("#sel-count").textContent = `${S.selected.size} selected` + (S.selected.size > here ? ` (${S.selected.size - here} on other pages)` : "");
  document.querySelectorAll(".card").forEach((c) => c.classList.toggle("selected", S.selected.has(Number(c.dataset.id))));
}
$("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); S.offset = 0; loadGrid(); });
$("#prev-page").addEventListener("click", () => { S.offset = Math.max(0, S.offset - PAGE); loadGrid(); });
$("#next-page").addEventListener("click", () => { if (S.offset + PAGE < S.ids.length) { S.offset += PAGE; loadGrid(); } });
$("#select-page").addEventListener("click", () => { S.items.forEach((it) => S.selected.add(it.id)); renderGrid(); });
$("#select-none").addEventListener("click", () => { S.selected.clear(); renderGrid(); });
$("#bulk-btn").addEventListener("click", () => guard("#grid-msg", async () => {
  await dsReady();
  if (!S.selected.size) throw new Error("Select images first.");
  const res = await api("/api/annotations/bulk", { method: "POST", body: {
    image_ids: [...S.selected], labels: [$("#bulk-class").value], mode: S.ds.multi ? $("#bulk-mode").value : "set",
    time_spent: S.selStart === null ? null : Math.min((performance.now() - S.selStart) / 1000, 86400 * S.selected.size) } });
  S.selected.clear(); await loadGrid();
  offerUndo(res.annotation_ids, `Tagged ${plural(res.annotated, "image")}.` + (res.retrain_job
    ? ` Enough new labels: retraining (job ${res.retrain_job}); if you undo, train again or pin an earlier run.` : ""));
  if (res.retrain_job) { S.watch = res.retrain_job; pollJobs(); }
}));
function offerUndo(ids, text) {  // a bulk edit's message with a button that takes it back
  flash("#grid-msg", text);
  if (!ids.length) return;
  $("#grid-msg").append(" ", el("button", { id: "undo-bulk", onclick: () => guard("#grid-msg", async () => {
    const res = await api("/api/annotations/undo", { method: "POST", body: { ids } });
    await loadGrid();
    flash("#grid-msg", `Undone: ${plural(res.deleted, "label")} taken back.`);
  }) }, "Undo"));
}
$("#accept-btn").addEventListener("click", () => guard("#grid-msg", async () => {
  await dsReady();
  const f = Object.fromEntries(Object.entries(filters()).map(([k, v]) => [k, v === "" ? null : v]));  // "" is "any"
  const body = { threshold: Number($("#threshold").value), filters: f };
  const path = `/api/datasets/${encodeURIComponent(S.ds.name)}/accept-suggestions`;
  const dry = await api(path, { method: "POST", body: { ...body, dry_run: true } });
  if (!dry.accepted) { flash("#grid-msg", `No suggestions to accept: ${dry.skipped_labeled} already labeled, ${dry.below_threshold} below threshold.`, true); return; }
  if (!confirm(`Accept ${dry.accepted} model suggestions at or above ${pct(body.threshold)} as your labels (images of the current filter)?\n` +
               `${dry.skipped_labeled} images already labeled are kept as they are.`)) return;
  const res = await api(path, { method: "POST", body });
  await loadGrid();
  offerUndo(res.annotation_ids, `Accepted ${res.accepted} suggestions; ${res.skipped_labeled} already labeled (kept); ${res.below_threshold} below threshold.`);
}));
$("#autotrain-btn").addEventListener("click", () => guard("#grid-msg", async () => {
  await dsReady();
  const v = $("#autotrain-every").value.trim();
  const a = await api(`/api/datasets/${encodeURIComponent(S.ds.name)}/autotrain`, { method: "PUT",
    body: { every: v === "" ? null : Number(v) } });
  flash("#grid-msg", a.every ? `Retraining after every ${a.every} new labels.` : "Automatic retraining off.");
  await loadAutotrain();
}));
$("#label-next").addEventListener("click", () => guard("#grid-msg", async () => {  // the queue's first image nobody has open
  await dsReady();
  setFields(new URLSearchParams({ sort: $("#f-sort").value.startsWith("queue:") ? $("#f-sort").value : "queue:margin" }));  // the whole queue
  await loadGrid();
  if (!S.ids.length) { flash("#grid-msg", "Nothing left to label in this dataset's queue.", true); return; }
  S.back = null; await openImage(0, 1);
}));
$("#votes-btn").addEventListener("click", () => guard("#grid-msg", async () => {
  await dsReady();
  const res = await api(`/api/datasets/${encodeURIComponent(S.ds.name)}/votes`, { method: "PUT", body: { votes_per_image: Number($("#votes").value) } });
  flash("#grid-msg", res.votes_per_image > 1 ? `Label queues ask for ${res.votes_per_image} annotators' labels on each image.` : "Label queues ask for one label per image.");
  if (S.order) await loadGrid();
}));
$("#train-btn").addEventListener("click", () => guard("#grid-msg", async () => {
  await dsReady();
  const btn = $("#train-btn");
  btn.disabled = true; flash("#grid-msg", "Starting training...");
  try {
    const job = await api("/api/train", { method: "POST", body: { dataset: S.ds.name, mode: "linear", model: $("#train-model").value } });
    flash("#grid-msg", job.already ? `This training is already ${job.status} (job ${job.id}).` : `Training started (job ${job.id}).`);
    S.watch = job.id;
    pollJobs();
  } finally { btn.disabled = false; }
}));

// ------------------------------------------------------------------ image view
// Claims (the image each annotator has open) go out one at a time, in the order they were made, so that the image
// finally shown is the one the server holds.
function claimOp(id, method) {
  const p = S.claimChain.then(() => api(`/api/images/${id}/claim`, { method }));
  S.claimChain = p.catch(() => {});
  return p;
}
const inQueue = () => S.order && S.back !== "review";  // a label queue, not Review's list of conflicts (others labeled those)
// dir (+1/-1): a move through the list. Through a label queue, it passes over images that someone else has open (their
// claim) or that got their votes since the queue loaded, so that annotators working one queue label different images;
// past the end of the list it loads the queue again.
async function openImage(pos, dir = 0, skipped = 0, refilled = false) {
  if (dir > 0 && (pos >= S.ids.length || S.reorder) && inQueue() && !refilled) { await refillQueue(skipped); return; }
  if (pos < 0 || pos >= S.ids.length) return;
  S.pos = pos; S.loading = true;  // labels wait until this image is shown (see save)
  await guard("#image-msg", async () => {
    const id = S.ids[pos], nav = S.nav;
    const hold = S.me.role !== "viewer" ? await claimOp(id, "POST") : null;  // first: the detail then shows any label given before it
    const image = S.nav === nav && S.pos === pos ? await api(`/api/images/${id}`) : null;
    if (S.nav !== nav) { if (hold && hold.claimed) claimOp(id, "DELETE").catch(() => {}); return; }  // left the image view
    if (S.pos !== pos) return;  // moved on while this one loaded: the later move wins
    const mine = !S.shown.has(id) && image.annotations.some((a) => a.author === S.me.name);  // labeled before this list loaded
    const taken = hold && !hold.claimed || image.answered_by_others || dir > 0 && mine;
    if (dir && inQueue() && taken) {
      if (pos + dir >= 0 && pos + dir < S.ids.length) await openImage(pos + dir, dir, skipped + 1, refilled);
      else if (dir > 0 && !refilled) await refillQueue(skipped + 1);
      else if (dir > 0) { show("grid"); flash("#grid-msg", "Nothing left to label in this queue: others have the rest open."); }
      else { await openImage(pos + skipped + 1); flash("#image-msg", "Every earlier image is open or labeled by someone else.", true); }
      return;
    }
    if (!S.image || S.image.id !== image.id) S.search = subtree(image);  // a list narrowed for the last image would remap the digits
    S.image = image; S.shown.add(id);
    S.checked = new Set(S.image.labels); S.shownAt = performance.now();
    show("image");
    $("#big").src = `/api/images/${S.image.id}/file`;
    if (pos + 1 < S.ids.length) new Image().src = `/api/images/${S.ids[pos + 1]}/file`;  // keyboard labeling: no wait
    $("#big").alt = S.image.name;
    $("#pos").textContent = `${pos + 1} / ${S.ids.length} · #${S.image.id} ${S.image.name}` +
      (skipped ? ` · passed over ${plural(skipped, "image")} others have open or labeled` : "");
    renderImage();
  });
  if (S.pos === pos) S.loading = false;
}
async function refillQueue(skipped) {  // past the end of a queue's list (or reordered): the server's queue now, without others' claims and answers
  const nav = S.nav;
  S.offset = 0; S.loading = true;  // no label lands on the image still shown meanwhile
  try { await loadGrid(); } finally { S.loading = false; }
  if (S.nav !== nav) return;
  if (S.ids.length) await openImage(0, 1, skipped, true);
  else { show("grid"); flash("#grid-msg", "Nothing left to label in this queue."); }
}
setInterval(() => {  // a claim lasts five minutes: renewed while its image stays on a visible page
  if (S.view !== "image" || !S.image || document.hidden || S.me.role === "viewer") return;
  const id = S.image.id;
  claimOp(id, "POST").then((h) => { if (S.image && S.image.id === id && (S.image.claimed_by || null) !== (h.claimed ? null : h.user)) {
    S.image.claimed_by = h.claimed ? null : h.user; renderImage(); } }).catch(() => {});
}, 60_000);
function renderImage() {
  const im = S.image;
  $("#current").replaceChildren(el("div", {}, el("strong", {}, "Label: "), el("span", { id: "current-labels" }, im.labels.join(", ") || "none"),
    im.agreement !== null ? el("span", { class: "muted" }, ` · agreement ${pct(im.agreement)}`) : "",
    im.conflict ? el("span", { class: "bad" }, " · conflict") : "", im.review ? el("span", { class: "muted" }, ` · ${im.review}`) : "",
    im.changed ? el("span", { class: "bad", title: "an author replaced a reviewed label with a different one" }, " · relabeled after review") : "",
    im.claimed_by ? el("span", { class: "bad", id: "claimed-by" }, ` · ${im.claimed_by} is labeling this image now`) : "",
    S.me.role === "admin" && im.annotation_id ? el("span", { class: "muted" }, " (a: accept, x: reject)") : ""));
  $("#suggestion").replaceChildren(...(im.top.length ? [el("div", {}, el("strong", {}, "Suggestion: "),
    el("span", { id: "suggested" }, suggested(im).join(", ") || "no tag"), S.ds.multi ? "" : ` ${pct(im.prediction ? im.prediction.score : im.top[0].score)}`,
    suggested(im).length ? " (space to accept)" : ""),
    el("div", { class: "muted" }, S.ds.multi  // each tag's own probability: the suggested ones, then the best others
      ? [...im.top.filter((t) => suggested(im).includes(t.label)), ...im.top.filter((t) => !suggested(im).includes(t.label)).slice(0, 3)]
        .map((t) => `${suggested(im).includes(t.label) ? "✓ " : ""}${t.label} ${pct(t.score)}`).join(" · ")
      : im.top.filter((t) => !suggested(im).includes(t.label)).slice(0, 3).map((t) => `${t.label} ${pct(t.score)}`).join(" · ")),
    hier() && im.confident ? el("div", { class: "muted", id: "confident" }, subtree(im) && S.search === subtree(im)
      ? `The model is sure of ${im.confident.node} (${pct(im.confident.score)}): the digits pick among its classes. Clear the search for all.`
      : `Most likely branch: ${im.confident.node} (${pct(im.confident.score)}).`) : ""] : []));
  renderPicker();
  const votes = new Map(im.annotations.filter((a) => a.source !== "model").map((a) => [`${a.source}|${a.author}`, a.id]));
  const replaced = (a) => a.source !== "model" && votes.get(`${a.source}|${a.author}`) !== a.id;  // its author relabeled
  $("#history").replaceChildren(...im.annotations.map((a) => el("li", { class: a.review === "rejected" ? "rejected" : replaced(a) ? "muted" : "" },
    `${a.labels.join(", ") || "∅"} — ${a.source}${a.author ? ` by ${a.author}` : ""}${a.from_run ? ` (accepted run ${a.from_run})` : ""}`,
    a.time_spent !== null ? ` · ${a.time_spent.toFixed(1)}s` : "", a.review ? ` · ${a.review} by ${a.reviewer}` : "",
    replaced(a) ? " · replaced by its author's newer label" : "",
    S.me.role === "admin" && a.source !== "model" && !replaced(a) ? [" ", ...["accepted", "rejected"].filter((v) => a.review !== v).map((v) =>
      el("button", { onclick: () => review(a.id, v) }, v === "accepted" ? "accept" : "reject")),
      a.review ? el("button", { onclick: () => review(a.id, "pending"), title: "take the verdict back" }, "clear") : ""] : "")));
}
function renderPicker() {
  const classes = S.ds.classes, list = searchable() ? shown() : classes, viewer = S.me.role === "viewer";
  if (!classes.length) {
    $("#picker").replaceChildren(el("p", { class: "bad" }, `No classes yet: ${S.me.role === "admin" ? "create them" : "an admin creates them"} in the Classes tab.`));
    return;
  }
  const rows = list.map((c, i) => el("label", { class: S.checked.has(c) ? "active" : "" },
    el("span", { class: "key" }, i < 10 ? (i + 1) % 10 : ""),
    el("input", { type: single() ? "radio" : "checkbox", name: "cls", value: c, checked: S.checked.has(c), disabled: viewer,
      onchange: (ev) => single() ? save([c]) : toggle(c, ev.target.checked) }), c));
  if (!searchable()) { $("#picker").replaceChildren(...rows); return; }
  // type to narrow the list; digits pick among the first ten matches; Enter picks (or, multi-label, ticks) the first
  const input = el("input", { id: "taxonomy-search", placeholder: `search ${classes.length} classes (/)`, value: S.search,
    oninput: (ev) => { S.search = ev.target.value; renderPicker(); const i = $("#taxonomy-search"); i.focus(); i.setSelectionRange(i.value.length, i.value.length); },
    onkeydown: (ev) => {
      ev.stopPropagation();
      const first = shown()[0];
      if (ev.key === "Enter" && first) { ev.preventDefault(); single() ? save([first]) : toggle(first, !S.checked.has(first)); }
      else if (ev.key === "Escape") ev.target.blur();
    } });
  $("#picker").replaceChildren(input, ...(rows.length ? rows : [el("p", { class: "muted" }, `No class matches "${S.search}".`)]));
}
function toggle(c, on) {
  on ? S.checked.add(c) : S.checked.delete(c);
  const focused = document.activeElement && document.activeElement.id === "taxonomy-search";
  renderPicker();
  if (focused) $("#taxonomy-search").focus();
}
async function save(labels, accepted = false) {
  // One save at a time, onto the image on screen: a double tap or a held key labels one image, not a run of
  // images never shown (or the previous image twice).
  if (S.saving || S.loading) return;
  if (S.me.role === "viewer") { flash("#image-msg", "Viewers cannot label: ask an admin for the annotator role.", true); return; }
  if (single() && !labels.length) { flash("#image-msg", "Pick a class first: press its digit or click it.", true); return; }
  S.saving = true;
  const im = S.image, pos = S.pos;
  try {
    await guard("#image-msg", async () => {
      const a = await api(`/api/images/${im.id}/annotations`, { method: "POST", body: {
        labels, time_spent: Math.max(0, performance.now() - S.shownAt) / 1000, accepted_suggestion: accepted } });
      S.undo.push({ id: a.id, pos });
      bumpLabeled(im.labels, labels);
      const others = Object.entries(a.disagree || {}).map(([who, l]) => `${who}: ${l.join(", ") || "none"}`);
      flash("#image-msg", `Saved ${labels.join(", ") || "no labels"}.` +
            (others.length ? ` Labeled differently by ${others.join("; ")}: a conflict for review.` : "") +
            (a.retrain_job ? ` Enough new labels: retraining (job ${a.retrain_job}).` : ""), others.length > 0);
      if (a.retrain_job) { S.watch = a.retrain_job; pollJobs(); }
      S.saving = false;
      if (S.pos === pos) await openImage(inQueue() ? pos + 1 : Math.min(pos + 1, S.ids.length - 1), 1);  // unless the annotator moved meanwhile
    });
  } finally { S.saving = false; }
}
// time spent on an image counts while the page is visible: a tab left in the background is not labeling time
document.addEventListener("visibilitychange", () => {
  if (document.hidden) S.hiddenAt = performance.now();
  else if (S.hiddenAt) { S.shownAt += performance.now() - Math.max(S.hiddenAt, S.shownAt); S.hiddenAt = 0; }  // only while this image was shown
});
async function undo() {
  if (S.saving) return;  // the label being saved is not on the undo stack yet
  const last = S.undo.pop();
  if (!last) { flash("#image-msg", "Nothing to undo.", true); return; }
  await guard("#image-msg", async () => {
    try { await api(`/api/annotations/${last.id}`, { method: "DELETE" }); } catch (e) {
      // refused for good (reviewed meanwhile, too old, gone): off the stack, so z goes on to the label before it
      if (!(e instanceof ApiError && [403, 404].includes(e.status))) S.undo.push(last);
      throw e;
    }
    await openImage(last.pos);
    flash("#image-msg", "Undone.");
    refreshCounts();
  });
}
async function review(id, status, next = false) {  // next: on to the following image, as labeling does
  await guard("#image-msg", async () => {
    await api(`/api/annotations/${id}/review`, { method: "POST", body: { status } });
    await openImage(next && S.pos + 1 < S.ids.length ? S.pos + 1 : S.pos); refreshCounts();
    if (next) flash("#image-msg", `Label ${status}.`);
  });
}
function backToGrid() {  // or to the Review tab, when the image was opened from its conflicts
  const tab = S.back || "grid";
  S.back = null;
  openTab(tab);
}
$("#back").addEventListener("click", backToGrid);
$("#big").addEventListener("error", async () => {  // the file broke or went after import: ask the thumbnail why
  const id = S.image && S.image.id;
  try { await api(`/api/images/${id}/thumb?size=64`); } catch (e) {
    if (S.image && S.image.id === id) flash("#image-msg", `This image cannot be shown: ${e.message}`, true);
  }
});
$("#save-btn").addEventListener("click", () => save([...S.checked]));
document.addEventListener("keydown", (ev) => {
  if ($("#image-view").hidden || ev.target.tagName === "INPUT" && ev.target.type !== "radio" && ev.target.type !== "checkbox" || ev.ctrlKey && ev.key !== "z" || ev.metaKey || ev.altKey) return;
  if (ev.repeat && !ev.key.startsWith("Arrow")) { ev.preventDefault(); return; }  // a held key labels once
  if (/^[0-9]$/.test(ev.key)) {
    const i = ev.key === "0" ? 9 : Number(ev.key) - 1;
    const c = (searchable() ? shown() : S.ds.classes)[i];
    if (!c) { flash("#image-msg", S.ds.classes.length ? `No class on key ${ev.key}.` : "No classes yet.", true); return; }
    ev.preventDefault();
    if (single()) save([c]); else toggle(c, !S.checked.has(c));
  } else if (ev.key === "ArrowRight") { ev.preventDefault(); openImage(S.pos + 1, 1); }
  else if (ev.key === "ArrowLeft") { ev.preventDefault(); openImage(S.pos - 1, -1); }
  else if (ev.key === " ") {
    ev.preventDefault();
    if (suggested(S.image).length) save(suggested(S.image), true);
    else if (S.image.top.length) flash("#image-msg", "The model is not sure of any tag here: pick them yourself.", true);
    else flash("#image-msg", "No suggestion for this image; train a model first.", true);
  } else if (ev.key === "Enter") { ev.preventDefault(); save([...S.checked]); }
  else if (ev.key === "z" || ev.key === "Backspace") { ev.preventDefault(); undo(); }
  else if ((ev.key === "a" || ev.key === "x") && S.me.role === "admin" && S.image && S.image.annotation_id) {  // review the label
    ev.preventDefault(); review(S.image.annotation_id, ev.key === "a" ? "accepted" : "rejected", true);
  }
  else if (ev.key === "Escape") backToGrid();
  else if (ev.key === "/" && searchable()) { ev.preventDefault(); $("#taxonomy-search").focus(); }
});

// ------------------------------------------------------------------ review
async function loadReview() {
  const name = encodeURIComponent((await dsReady()).name);
  const ag = await api(`/api/datasets/${name}/agreement`);
  $("#agreement").replaceChildren(el("p", {}, `${plural(ag.images_multi, "image")} labeled by two or more people; ${plural(ag.conflicts, "conflict")}; mean agreement ${pct(ag.mean_image_agreement) || "—"}.`),
    el("table", {}, el("tr", {}, el("th", {}, "annotator A"), el("th", {}, "annotator B"), el("th", {}, "images"), el("th", {}, "agreement"), el("th", {}, "kappa")),
      ag.pairs.map((p) => el("tr", {}, el("td", {}, p.a), el("td", {}, p.b), el("td", {}, p.images), el("td", {}, pct(p.agreement)), el("td", {}, p.kappa ?? "—")))));
  const who = await api(`/api/datasets/${name}/annotators`);
  const secs = (x) => x === null ? "—" : x >= 3600 ? `${(x / 3600).toFixed(1)} h` : x >= 60 ? `${(x / 60).toFixed(1)} min` : `${x.toFixed(1)} s`;
  $("#annotators").replaceChildren(who.length ? el("table", {}, el("tr", {}, ...["annotator", "images", "labels", "accepted", "rejected", "pending", "accepted suggestions", "time (total)", "time per label (median)", "agrees with others"].map((h) => el("th", {}, h))),
    who.map((a) => el("tr", {}, el("td", {}, a.annotator), el("td", {}, a.images), el("td", {}, a.labels), el("td", {}, a.accepted), el("td", {}, a.rejected), el("td", {}, a.pending),
      el("td", {}, a.accepted_suggestions), el("td", {}, secs(a.time_spent_total)), el("td", {}, secs(a.time_spent_median)),
      el("td", { title: `the others' votes that match theirs, over ${plural(a.shared_images, "image")} someone else labeled too` }, a.agreement_with_others === null ? "—" : `${pct(a.agreement_with_others)} on ${a.shared_images}`)))) : el("p", {}, "No human labels yet."));
  const cs = await api(`/api/datasets/${name}/conflicts`);
  S.conflicts = cs.map((c) => c.id);
  const open = (i) => { S.ids = cs.map((c) => c.id); S.back = "review"; openImage(i); };  // one after another
  $("#conflicts").replaceChildren(cs.length ? el("table", {}, cs.map((c, i) => el("tr", { class: "link", onclick: () => open(i), title: "open to review" },
    el("td", {}, el("img", { src: `/api/images/${c.id}/thumb?size=64`, alt: "" })), el("td", {}, `#${c.id}`),
    el("td", {}, Object.entries(c.by_author).map(([a, l]) => `${a}: ${l.join(", ")}`).join(" · "))))) : el("p", {}, "No conflicts."));
}

// ------------------------------------------------------------------ classes (admins)
function renderClasses() {
  needDs();
  $("#class-list").replaceChildren(...S.ds.classes.map((c) => el("li", {}, c)));
  const opts = () => S.ds.classes.map((c) => el("option", { value: c }, c));
  $("#rename-old").replaceChildren(...opts());
  $("#merge-sources").replaceChildren(...opts());
}
async function classOp(path, body, what) {
  await guard("#classes-msg", async () => {
    await dsReady();
    const res = await api(`/api/datasets/${encodeURIComponent(S.ds.name)}/classes${path}`, { method: "POST", body });
    await selectDataset(S.ds.name);
    renderClasses();
    flash("#classes-msg", `${what(res)}${res.relabeled !== undefined ? `; ${plural(res.relabeled, "label")} rewritten` : ""}.`);
  });
}
$("#add-classes").addEventListener("click", () => classOp("", { names: $("#new-classes").value.split("\n") },
  (r) => `Created ${r.added} class${r.added === 1 ? "" : "es"}` + (r.existing.length ? `; already there: ${r.existing.join(", ")}` : "")));
$("#rename-btn").addEventListener("click", () => classOp("/rename", { old: $("#rename-old").value, new: $("#rename-new").value.trim() }, () => "Renamed"));
$("#merge-btn").addEventListener("click", () => classOp("/merge", { sources: [...$("#merge-sources").selectedOptions].map((o) => o.value), target: $("#merge-target").value.trim() }, () => "Merged"));

// ------------------------------------------------------------------ data and users (admins)
async function loadUsers() {
  await guard("#admin-msg", async () => {
    const us = await api("/api/users");
    $("#users tbody").replaceChildren(...us.map((u) => el("tr", {}, el("td", {}, u.name), el("td", {}, u.role),
      el("td", {}, el("button", { class: "remove-user", onclick: () => removeUser(u.name) }, "Remove")))));
  });
}
async function removeUser(name) {
  if (!confirm(`Remove the account ${name}? Its sessions and tokens stop working; its labels stay.`)) return;
  await guard("#admin-msg", async () => { await api(`/api/users/${encodeURIComponent(name)}`, { method: "DELETE" }); flash("#admin-msg", `Removed ${name}.`); await loadUsers(); });
}
$("#user-form").addEventListener("submit", (ev) => { ev.preventDefault(); guard("#admin-msg", async () => {
  const body = { name: $("#user-name").value.trim(), role: $("#user-role").value, password: $("#user-password").value };
  let u, verb = "Added";
  try { u = await api("/api/users", { method: "POST", body }); } catch (e) {
    if (!(e instanceof ApiError && e.status === 409)) throw e;
    flash("#admin-msg", e.message, true); // the user exists: replace only when the admin says so
    if (!confirm(`${body.name} already exists. Give it the role ${body.role} and this password?\n` +
                 "A new password signs it out everywhere.")) return;
    u = await api("/api/users", { method: "POST", body: { ...body, replace: true } });
    verb = "Updated";
  }
  $("#user-name").value = ""; $("#user-password").value = "";
  flash("#admin-msg", `${verb} ${u.name} (${u.role}).`);
  await loadUsers();
}); });
$("#import-form").addEventListener("submit", (ev) => { ev.preventDefault(); guard("#admin-msg", async () => {
  const job = await api("/api/datasets/import", { method: "POST", body: { src: $("#import-src").value.trim(),
    name: $("#import-name").value.trim(), task: $("#import-task").value || null } });
  flash("#admin-msg", `Import started (job ${job.id}).`);
  S.watch = job.id;
  pollJobs();
}); });
$("#create-form").addEventListener("submit", (ev) => { ev.preventDefault(); guard("#admin-msg", async () => {
  const ds = await api("/api/datasets", { method: "POST", body: { name: $("#create-name").value.trim(), task: $("#create-task").value } });
  $("#create-name").value = "";
  await loadDatasets(ds.name);
  flash("#admin-msg", `Created ${ds.name} (${ds.task}). Next: its classes (Classes tab), then upload images.`);
}); });
const UPLOAD_BATCH = 100;
$("#upload-form").addEventListener("submit", (ev) => { ev.preventDefault(); guard("#admin-msg", async () => {
  if (!S.ds) throw new Error("Create or import a dataset first.");
  const files = [...$("#upload-files").files];
  if (!files.length) throw new Error("Choose image files first.");
  const res = { dataset: S.ds.name, added: [], duplicates: 0, rejected: [], prelabel_job: null };
  for (let i = 0; i < files.length; i += UPLOAD_BATCH) {  // a request takes at most 200 files (the server's default)
    if (files.length > UPLOAD_BATCH) flash("#admin-msg", `Uploading ${i + 1}-${Math.min(i + UPLOAD_BATCH, files.length)} of ${files.length} files...`);
    const form = new FormData();
    files.slice(i, i + UPLOAD_BATCH).forEach((f) => form.append("files", f, f.name));
    let part;
    try { part = await api(`/api/datasets/${encodeURIComponent(S.ds.name)}/upload`, { method: "POST", form }); }
    catch (e) { if (i) e.message += ` The first ${i} files were uploaded; choose the rest again.`; throw e; }
    res.added.push(...part.added); res.duplicates += part.duplicates; res.rejected.push(...part.rejected);
    res.prelabel_job = part.prelabel_job || res.prelabel_job;
  }
  const bad = res.rejected.map((r) => `- ${r.reason}`).join("\n");
  flash("#admin-msg", `Uploaded ${plural(res.added.length, "image")} to ${res.dataset}; ${plural(res.duplicates, "duplicate")} skipped` +
        (bad ? `; ${res.rejected.length} not added (not kept; fix and upload again):\n${bad}\n` : ".") + (res.prelabel_job ? ` Storing the model's suggestions for them (job ${res.prelabel_job}).` : ""), res.rejected.length > 0);
  $("#upload-files").value = "";
  await loadDatasets(S.ds.name);
  if (res.prelabel_job) { S.watch = res.prelabel_job; pollJobs(); }
}); });

// ------------------------------------------------------------------ jobs
async function cancelJob(id) {
  await guard("#jobs-msg", async () => { const j = await api(`/api/jobs/${id}`, { method: "DELETE" }); flash("#jobs-msg", `Job ${id}: ${j.status === "cancelled" ? "cancelled" : "stops at its next step"}.`); });
  await pollJobs();
}

async function pollJobs() {
  let jobs;
  try { jobs = await api("/api/jobs"); } catch { return; }
  const running = jobs.filter((j) => j.status === "queued" || j.status === "running");
  const prog = (j) => j.total ? el("progress", { max: j.total, value: j.done }) : "";
  $("#jobs tbody").replaceChildren(...jobs.map((j) => el("tr", { "data-job": j.id }, el("td", {}, j.id), el("td", {}, j.kind), el("td", {}, j.user),
    el("td", { class: j.status === "failed" ? "bad" : "" }, j.status === "running" && j.cancelled_by ? "cancelling" : j.status), el("td", {}, j.stage, " ", prog(j), j.total ? ` ${j.done}/${j.total}` : ""),
    el("td", {}, j.error || (j.result ? JSON.stringify(j.result.metrics || j.result).slice(0, 160) : "")),
    el("td", {}, (j.status === "queued" || j.status === "running") && (S.me.role === "admin" || (S.me.role === "annotator" && j.user === S.me.name)) ? el("button", { class: "cancel-job", onclick: () => cancelJob(j.id) }, "Cancel") : ""))));
  $("#job-strip").replaceChildren(...running.map((j) => el("div", {}, `${j.kind}: ${j.stage} `, prog(j), j.total ? ` ${j.done}/${j.total}` : "")));
  const wasRunning = S.polling !== null;
  clearTimeout(S.polling); S.polling = null;
  running.forEach((j) => S.followed.add(j.id));
  if (running.length) { S.polling = setTimeout(pollJobs, 1000); return; }
  if (!wasRunning && S.watch === null) return;
  const ended = jobs.filter((j) => S.followed.has(j.id)); S.followed.clear();
  const job = jobs.find((j) => j.id === S.watch);
  S.watch = null;
  const said = S.watchNote; S.watchNote = null;
  const here = (j) => S.ds && (j.params.dataset ?? j.params.name) === S.ds.name;  // an import names its dataset `name`
  if (!job && !ended.some(here)) return;  // someone's job on another dataset: nothing on this screen changed
  if (job && (job.status === "failed" || job.status === "cancelled")) {
    const why = `${job.kind} ${job.status === "failed" ? "failed" : "stopped"}: ${job.error}`;
    flash("#grid-msg", why, true); flash("#admin-msg", why, true);
    return;
  }
  if (job && job.kind === "import") {
    const r = job.result;
    await loadDatasets(r.dataset);
    flash("#admin-msg", `Imported ${plural(r.imported, "image")} into ${r.dataset} (${r.task}); ${r.skipped_existing} already known; ` +
          `${r.broken.length} unreadable${r.broken.length ? `: ${r.broken.map((b) => `${b.path} (${b.reason})`).join(", ")}` : ""}.`, r.broken.length > 0);
    return;
  }
  if (job && job.kind === "embed" && S.ds) {  // the diversity order the grid was waiting for
    if (!$("#image-view").hidden && inQueue()) {  // labeling goes on: the next move loads the queue in its new order
      S.reorder = true;
      flash("#image-msg", "Images embedded: the next image comes from the queue in diversity order.");
      return;
    }
    await loadGrid();
    flash("#grid-msg", `Images embedded: the grid is in ${S.order || "its"} order now.`);
    return;
  }
  const note = unreadable(job && job.result);
  const pinned = S.ds && S.ds.pinned_run && job && job.kind === "train"  // a new run does not serve while one is pinned
    ? `Run ${job.result.run_id} trained; run ${S.ds.pinned_run} still serves (pinned).` : null;
  if (S.ds && !$("#image-view").hidden) {  // labeling goes on: refresh this image's suggestion, keep the list
    const id = S.image.id, pos = S.pos;  // the annotator may move on (or label) while this loads
    const fresh = await api(`/api/images/${id}`);
    if (S.pos === pos && S.image.id === id && !S.loading && !S.saving) { S.image = fresh; renderImage(); }
    await Promise.all([loadAutotrain(), loadRuns()]);
    flash("#image-msg", `${pinned || "Retrained; suggestions refreshed."}${note}`, note !== "");
  } else if (S.ds) {  // new suggestions and model list; the page and the selection stay
    S.ds = await api(`/api/datasets/${encodeURIComponent(S.ds.name)}`);
    await Promise.all([loadGrid(), loadRuns()]);
    flash("#grid-msg", `${said ? `${said} ` : ""}${pinned || "Job finished; suggestions refreshed."}${note}`, note !== "");
  }
}
function unreadable(result) {  // files that broke after import: training and pre-labeling skip them and say so
  const files = [...(result?.metrics?.skipped || []), ...(result?.prelabel?.broken || result?.broken || [])];
  const paths = [...new Set(files.map((f) => f.path))];
  if (!paths.length) return "";
  return ` ${plural(paths.length, "image")} left out, their files can no longer be read: ${paths.slice(0, 5).join(", ")}${paths.length > 5 ? ", ..." : ""}.`;
}

start();
