// The organizer console: create and configure races, run their lifecycle, watch live counters,
// review fair-play flags with their evidence, export the results.
import { api, clear, download, el, header, km, requireLogin, when } from "/static/common.js";

const $ = (id) => document.getElementById(id);
const SPORTS = ["run", "ride", "walk", "swim", "row"];
const KINDS = ["distance", "time", "course", "collective"];
const ALLOWED = {
  open: ["draft"],
  start: ["open"],
  end: ["live"],
  finalize: ["finished"],
  cancel: ["draft", "open", "live", "finished"],
};
let selected = null;
let info = null;
let lastSamples = null; // [unix seconds, samples accepted] of the previous poll

function fail(error) {
  $("console-error").textContent = error.message;
}

// The settings fields shared by the create and configure forms.
function fields(form, values = {}, creating = false) {
  const input = (name, label, attrs = {}) =>
    el("label", {}, el("span", {}, label), el("input", { name, id: `${form.id}-${name}`, value: values[name] ?? "", ...attrs }));
  const select = (name, label, options) =>
    el(
      "label",
      {},
      el("span", {}, label),
      el("select", { name, id: `${form.id}-${name}` }, options.map((o) => el("option", { value: o, selected: values[name] === o }, o))),
    );
  clear(
    form,
    input("name", "Name", { required: creating, maxlength: 120 }),
    creating ? select("sport", "Sport", SPORTS) : null,
    creating ? select("kind", "Kind", KINDS) : null,
    input("target_km", "Distance (km)", { type: "number", step: "0.001", min: "0", value: values.target_m ? values.target_m / 1000 : "" }),
    input("duration_min", "Duration (min)", { type: "number", step: "1", min: "0", value: values.duration_s ? values.duration_s / 60 : "" }),
    input("categories", "Categories", { placeholder: "comma separated", value: (values.categories || []).join(", ") }),
    input("capacity", "Capacity", { type: "number", min: "1", value: values.capacity ?? "" }),
    el("label", {}, el("span", {}, "Route (GPX)"), el("input", { name: "gpx", type: "file", accept: ".gpx,application/gpx+xml", id: `${form.id}-gpx` })),
    el("button", { type: "submit", id: `${form.id}-submit` }, creating ? "Create race" : "Save"),
  );
}

// A GPX file's track points as [lat, lon], thinned to the API's 5,000-point limit (parsed here, no upload).
async function routeFrom(file) {
  const doc = new DOMParser().parseFromString(await file.text(), "application/xml");
  const points = [...doc.querySelectorAll("trkpt, rtept")].map((p) => [Number(p.getAttribute("lat")), Number(p.getAttribute("lon"))]);
  if (points.length < 2) throw new Error("the GPX file has no track");
  const step = Math.ceil(points.length / 5000);
  return points.filter((_, i) => i % step === 0 || i === points.length - 1).slice(-5000);
}

async function settingsOf(form, creating) {
  const data = new FormData(form);
  const body = {};
  if (data.get("name")) body.name = data.get("name");
  if (creating) {
    body.sport = data.get("sport");
    body.kind = data.get("kind");
  }
  if (data.get("target_km")) body.target_m = Number(data.get("target_km")) * 1000;
  if (data.get("duration_min")) body.duration_s = Number(data.get("duration_min")) * 60;
  const categories = String(data.get("categories") || "").split(",").map((c) => c.trim()).filter(Boolean);
  if (categories.length) body.categories = categories;
  if (data.get("capacity")) body.capacity = Number(data.get("capacity"));
  const gpx = data.get("gpx");
  if (gpx && gpx.size) body.route = await routeFrom(gpx);
  return body;
}

async function listRaces() {
  const { items } = await api("/races?mine=true");
  clear(
    $("my-races"),
    items.length
      ? items.map((race) =>
          el(
            "li",
            {},
            el("a", { href: `#${race.id}`, "data-race": race.id }, race.name),
            el("span", { class: `badge ${race.status}` }, race.status),
            el("span", { class: "muted" }, ` ${when(race.at)}`),
          ),
        )
      : el("li", { class: "muted" }, "None yet."),
  );
}

function counters(totals) {
  const now = Date.now() / 1000;
  let rate = 0;
  if (lastSamples && now > lastSamples[0]) rate = Math.max(0, (totals.samples - lastSamples[1]) / (now - lastSamples[0]));
  lastSamples = [now, totals.samples || 0];
  const shown = [
    ["athletes", info.athletes],
    ["live", totals.racing],
    ["finished", totals.finished],
    ["samples/s", Math.round(rate)],
    ["flagged", totals.flagged],
    ["DSQ", totals.dsq],
  ];
  clear(
    $("counters"),
    shown.map(([label, value]) => el("div", { class: "counter", "data-counter": label }, el("b", {}, value ?? 0), label)),
  );
}

function evidence(flag) {
  const facts = Object.entries(flag.evidence || {}).map(([k, v]) => `${k}: ${typeof v === "number" ? Math.round(v * 100) / 100 : v}`);
  return el("div", {}, el("b", {}, flag.rule), el("span", { class: "evidence" }, ` ${facts.join(", ")} at ${when(flag.t)}`));
}

let shownFlags = "";

async function drawFlags() {
  const flags = await api(`/races/${selected}/flags`);
  const key = `${selected}:${JSON.stringify(flags)}`;
  if (key === shownFlags) return; // unchanged: keep the buttons where they are
  shownFlags = key;
  const byAthlete = new Map();
  for (const flag of flags) {
    if (!byAthlete.has(flag.user_id)) byAthlete.set(flag.user_id, []);
    byAthlete.get(flag.user_id).push(flag);
  }
  $("flags-panel").hidden = false;
  clear(
    $("flags"),
    byAthlete.size
      ? [...byAthlete].map(([user, list]) => {
          const open = list.some((f) => f.decision === null);
          const decided = list.findLast((f) => f.decision !== null)?.decision;
          const decide = (decision) => async () => {
            try {
              await api(`/races/${selected}/flags/${encodeURIComponent(user)}/${decision}`, { method: "POST" });
              await refresh();
            } catch (error) {
              fail(error);
            }
          };
          return el(
            "tr",
            { "data-user": user, class: "flag" },
            el("td", {}, el("b", { class: "flag-name" }, list[0].name || user)),
            el("td", {}, list.slice(-5).map(evidence), list.length > 5 ? el("div", { class: "muted" }, `and ${list.length - 5} more`) : null),
            el(
              "td",
              {},
              open
                ? [
                    el("button", { type: "button", class: "secondary accept", onclick: decide("accept") }, "Accept"),
                    el("button", { type: "button", class: "disqualify", onclick: decide("disqualify") }, "Disqualify"),
                  ]
                : el("span", { class: `badge ${decided === "dsq" ? "dsq" : "finished"}`, "data-decision": decided }, decided === "dsq" ? "DSQ" : decided),
            ),
          );
        })
      : el("tr", {}, el("td", { colspan: 3, class: "muted" }, "No flags.")),
  );
}

async function refresh() {
  if (!selected) return;
  info = await api(`/races/${selected}`);
  $("race-panel").hidden = false;
  $("race-title").textContent = info.name;
  $("race-status").textContent = info.status;
  $("race-status").className = `badge ${info.status}`;
  $("live-link").href = `/races/${encodeURIComponent(selected)}`;
  $("race-summary").textContent = [info.sport, info.kind, info.target_m ? km(info.target_m) : null, info.route ? `route of ${info.route.length} points` : null]
    .filter(Boolean)
    .join(" · ");
  for (const button of document.querySelectorAll("#actions [data-action]")) {
    button.disabled = !ALLOWED[button.dataset.action].includes(info.status);
  }
  counters(info.totals || {});
  const editable = ["draft", "open"].includes(info.status);
  if (editable && $("configure-panel").hidden) fields($("configure-form"), info);
  $("configure-panel").hidden = !editable;
  if (["live", "finished", "final"].includes(info.status)) await drawFlags();
}

function select(raceId) {
  selected = raceId;
  lastSamples = null;
  $("configure-panel").hidden = true;
  $("flags-panel").hidden = true;
  if (location.hash !== `#${raceId}`) location.hash = raceId;
  refresh().catch(fail);
}

async function main() {
  const account = await header();
  if (!requireLogin(account)) return;
  if (!account.roles.includes("organizer")) {
    fail(new Error("Your account has no organizer role: an admin grants it (PUT /api/v1/users/{id}/roles)."));
    return;
  }
  fields($("create-form"), {}, true);
  $("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const race = await api("/races", { method: "POST", body: await settingsOf(event.target, true) });
      event.target.reset();
      await listRaces();
      select(race.id);
    } catch (error) {
      fail(error);
    }
  });
  $("configure-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`/races/${selected}`, { method: "PATCH", body: await settingsOf(event.target, false) });
      $("configure-panel").hidden = true;
      await refresh();
      await listRaces();
    } catch (error) {
      fail(error);
    }
  });
  for (const button of document.querySelectorAll("#actions [data-action]")) {
    button.addEventListener("click", async () => {
      $("console-error").textContent = "";
      try {
        await api(`/races/${selected}/actions/${button.dataset.action}`, { method: "POST" });
        await refresh();
        await listRaces();
      } catch (error) {
        fail(error);
      }
    });
  }
  $("export-csv").addEventListener("click", () => download(`/races/${selected}/results.csv`, `race-${selected}-results.csv`).catch(fail));
  window.addEventListener("hashchange", () => location.hash.length > 1 && select(location.hash.slice(1)));
  await listRaces();
  if (location.hash.length > 1) select(location.hash.slice(1));
  setInterval(() => refresh().catch(fail), 1000);
}

main();
