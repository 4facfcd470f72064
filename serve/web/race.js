// The live race page: clock, a virtual leaderboard (only the visible rows exist in the DOM),
// follow an athlete, around me, and the course with a dot per leading athlete.
// Each tick of the SSE stream carries the top N and the totals (bounded, whatever the field);
// rows further down are read as windows of the spectator cache while they are on screen.
import { api, clear, clock, el, header, km, pageLink, stream } from "/static/common.js";

const raceId = decodeURIComponent(location.pathname.split("/")[2] || "");
const ROW = 32;
const OVERSCAN = 6;
const DOTS = 100;
const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  status: null,
  skew: 0, // server clock minus ours, in seconds
  entries: [], // the latest tick's top N, overall
  totals: {},
  category: "",
  q: "",
  total: 0,
  window: { key: "", start: 0, rows: [] },
  followed: localStorage.getItem(`arena.follow.${raceId}`) || null,
  followedRow: null,
  me: null,
  aroundOpen: false,
};

// -- the virtual board ---------------------------------------------------------------

const board = $("board");
const spacer = $("spacer");
const pool = [];

function rowNode() {
  const node = el(
    "div",
    { class: "row" },
    el("span", { class: "pos" }),
    el("span", { class: "name" }),
    el("span", { class: "dist" }),
    el("span", { class: "gap" }),
    el("span", { class: "state" }),
  );
  node.addEventListener("click", () => follow(node.dataset.user));
  spacer.append(node);
  return node;
}

function badges(row) {
  const out = [];
  if (row.status && row.status !== "racing") out.push(el("span", { class: `badge ${row.status}` }, row.status === "dsq" ? "DSQ" : row.status));
  if (row.signal_lost) out.push(el("span", { class: "badge lost", title: "signal lost" }, "signal lost"));
  return out;
}

function fill(node, row, top) {
  node.hidden = false;
  node.style.transform = `translateY(${top}px)`;
  node.dataset.user = row.user_id;
  node.dataset.place = row.place;
  node.classList.toggle("followed", row.user_id === state.followed);
  node.classList.toggle("me", row.user_id === state.me?.id);
  const [pos, name, dist, gap, status] = node.children;
  pos.textContent = row.pos;
  name.textContent = row.name;
  name.title = row.name;
  dist.textContent = km(row.distance_m);
  gap.textContent = row.gap_m > 0.5 ? `+${km(row.gap_m)}` : row.pos === 1 ? "leader" : "–";
  clear(status, badges(row));
}

function visibleRange() {
  const first = Math.max(0, Math.floor(board.scrollTop / ROW) - OVERSCAN);
  const count = Math.ceil(board.clientHeight / ROW) + 2 * OVERSCAN;
  return [first, Math.min(first + count, Math.max(state.total, 0))];
}

function fromTick(first, last) {
  return state.entries.slice(first, last).map((e) => ({ ...e, pos: e.rank, place: e.rank }));
}

let fetching = false;
let stale = false;

// The rows on screen: from the tick when it covers them, else one windowed read.
async function refreshWindow() {
  const [first, last] = visibleRange();
  const filtered = state.category || state.q;
  if (!filtered) state.total = state.totals.participants || 0;
  if (!filtered && last <= state.entries.length) {
    state.window = { key: "tick", start: first, rows: fromTick(first, last) };
    render();
    return;
  }
  if (fetching) {
    stale = true;
    return;
  }
  fetching = true;
  try {
    const params = new URLSearchParams({ start: first, count: Math.max(last - first, 1) });
    if (state.category) params.set("category", state.category);
    if (state.q) params.set("q", state.q);
    const page = await api(`/races/${raceId}/leaderboard/rows?${params}`);
    state.total = page.total;
    state.window = {
      key: "rows",
      start: page.start,
      rows: page.rows.map((row, i) => ({ ...row, pos: state.q ? row.place : page.start + i + 1 })),
    };
    render();
  } catch (error) {
    $("race-error").textContent = error.message;
  } finally {
    fetching = false;
    if (stale) {
      stale = false;
      refreshWindow();
    }
  }
}

function render() {
  spacer.style.height = `${state.total * ROW}px`;
  const rows = state.window.rows;
  while (pool.length < rows.length) pool.push(rowNode());
  pool.forEach((node, i) => {
    if (i < rows.length) fill(node, rows[i], (state.window.start + i) * ROW);
    else node.hidden = true;
  });
  $("board-count").textContent = `${state.total.toLocaleString()} athlete${state.total === 1 ? "" : "s"}`;
}

let scrolling = false;
board.addEventListener("scroll", () => {
  if (scrolling) return;
  scrolling = true;
  requestAnimationFrame(() => {
    scrolling = false;
    refreshWindow();
  });
});

// -- follow and around me ------------------------------------------------------------

function follow(userId) {
  state.followed = state.followed === userId ? null : userId;
  if (state.followed) localStorage.setItem(`arena.follow.${raceId}`, state.followed);
  else localStorage.removeItem(`arena.follow.${raceId}`);
  state.followedRow = null;
  render();
  refreshFollowed();
}

async function around(userId, n) {
  try {
    return await api(`/races/${raceId}/leaderboard/around/${encodeURIComponent(userId)}?n=${n}`);
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

async function refreshFollowed() {
  const pinned = $("pinned");
  if (!state.followed) {
    clear(pinned);
    return;
  }
  const found = await around(state.followed, 1);
  const row = found?.entries.find((r) => r.user_id === state.followed);
  state.followedRow = row || null;
  if (!row) {
    clear(pinned);
    return;
  }
  const node = el("div", { class: "row followed", id: "followed-row" }, ...Array.from({ length: 5 }, () => el("span")));
  node.addEventListener("click", () => follow(row.user_id));
  fill(node, { ...row, pos: row.place }, 0);
  node.style.transform = "";
  clear(pinned, el("div", { class: "muted" }, "Following"), node);
}

async function refreshAround() {
  if (!state.me || !state.aroundOpen) return;
  const found = await around(state.me.id, 5);
  const list = $("around-list");
  $("around-card").hidden = false;
  if (!found) {
    clear(list, el("li", { class: "muted" }, "You are not in this race."));
    return;
  }
  clear(
    list,
    found.entries.map((row) =>
      el(
        "li",
        { class: row.user_id === state.me.id ? "me" : "" },
        `#${row.place} `,
        el("b", {}, row.name),
        ` ${km(row.distance_m)}`,
        row.gap_m > 0.5 ? el("span", { class: "muted" }, ` +${km(row.gap_m)}`) : null,
        badges(row),
      ),
    ),
  );
  return found.place;
}

$("around-me").addEventListener("click", async () => {
  state.aroundOpen = true;
  const place = await refreshAround();
  if (place && !state.category && !state.q) board.scrollTop = Math.max(0, (place - 4) * ROW);
});

// -- the course ----------------------------------------------------------------------

const course = { node: null, length: 0, metres: 400, line: false };
const dots = new Map();

function haversine([lat0, lon0], [lat1, lon1]) {
  const rad = Math.PI / 180;
  const a =
    Math.sin(((lat1 - lat0) * rad) / 2) ** 2 +
    Math.cos(lat0 * rad) * Math.cos(lat1 * rad) * Math.sin(((lon1 - lon0) * rad) / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(a));
}

function drawCourse(info) {
  const svg = $("course");
  const [width, height, pad] = [600, 340, 24];
  let shape;
  if (info.route && info.route.length >= 2) {
    const lat0 = info.route.reduce((s, p) => s + p[0], 0) / info.route.length;
    const squash = Math.cos((lat0 * Math.PI) / 180);
    const xy = info.route.map(([lat, lon]) => [lon * squash, -lat]);
    const xs = xy.map((p) => p[0]);
    const ys = xy.map((p) => p[1]);
    const [x0, y0] = [Math.min(...xs), Math.min(...ys)];
    const span = Math.max(Math.max(...xs) - x0, Math.max(...ys) - y0) || 1;
    const scale = Math.min(width - 2 * pad, height - 2 * pad) / span;
    const points = xy.map(([x, y]) => `${(pad + (x - x0) * scale).toFixed(1)},${(pad + (y - y0) * scale).toFixed(1)}`);
    shape = el("polyline", { class: "route", points: points.join(" ") });
    course.metres = info.route.slice(1).reduce((sum, p, i) => sum + haversine(info.route[i], p), 0) || 400;
  } else if (["distance", "course"].includes(info.kind)) {
    shape = el("path", { class: "route", d: `M ${pad} ${height / 2} H ${width - pad}` });
    course.line = true;
  } else {
    shape = el("path", { class: "route", d: "M 170 70 H 430 A 100 100 0 0 1 430 270 H 170 A 100 100 0 0 1 170 70 Z" });
    course.metres = 400;
  }
  clear(svg, shape);
  course.node = shape;
  course.length = shape.getTotalLength();
  const start = shape.getPointAtLength(0);
  svg.append(el("circle", { cx: start.x, cy: start.y, r: 7, fill: "#1d2330" }, el("title", {}, "start")));
}

function fraction(distance) {
  const target = state.info.target_m;
  if (["distance", "course"].includes(state.info.kind) && target) return Math.min(distance / target, 1);
  return (distance % course.metres) / course.metres;
}

function drawDots() {
  if (!course.node) return;
  const shown = state.entries.slice(0, DOTS);
  if (state.followedRow && !shown.some((e) => e.user_id === state.followed)) shown.push(state.followedRow);
  const keep = new Set();
  const svg = $("course");
  shown.forEach((entry, i) => {
    keep.add(entry.user_id);
    let dot = dots.get(entry.user_id);
    if (!dot) {
      dot = el("g", { class: "dot", "data-user": entry.user_id }, el("circle", { r: 6 }), el("title"));
      dots.set(entry.user_id, dot);
      svg.append(dot);
    }
    const p = course.node.getPointAtLength(fraction(entry.distance_m) * course.length);
    dot.style.transform = `translate(${p.x}px, ${p.y}px)`;
    dot.classList.toggle("leader", i === 0);
    dot.classList.toggle("followed", entry.user_id === state.followed);
    dot.classList.toggle("lost", Boolean(entry.signal_lost));
    dot.classList.toggle("provisional", entry.status === "provisional");
    dot.lastChild.textContent = `${entry.name}: ${km(entry.distance_m)}`;
  });
  for (const [user, dot] of dots) {
    if (!keep.has(user)) {
      dot.remove();
      dots.delete(user);
    }
  }
  const followedDot = dots.get(state.followed); // on top of the others
  if (followedDot) svg.append(followedDot);
}

// -- clock and totals ----------------------------------------------------------------

function transitionAt(status) {
  return state.info?.transitions.findLast((t) => t.status === status)?.at;
}

function tickClock() {
  if (!state.info) return;
  const started = transitionAt("live");
  const ended = transitionAt("finished");
  let text = "–";
  let note = "";
  if (state.status === "live" && started) {
    const elapsed = Date.now() / 1000 + state.skew - started;
    text = clock(elapsed);
    if (state.info.kind === "time" && state.info.duration_s) note = `${clock(state.info.duration_s - elapsed)} left`;
  } else if (started && ended) {
    text = clock(ended - started);
    note = "final time";
  } else if (state.info.start_at && ["open", "draft"].includes(state.status)) {
    text = clock(state.info.start_at - (Date.now() / 1000 + state.skew));
    note = "until the start";
  }
  $("race-clock").textContent = text;
  $("race-clock").title = note;
}

function drawTotals() {
  const t = state.totals;
  const counters = [
    ["athletes", t.participants],
    ["racing", t.racing],
    ["finished", t.finished],
    ["provisional", t.provisional],
    ["DSQ", t.dsq],
    ["signal lost", state.signalLost],
  ];
  clear(
    $("race-totals"),
    counters.map(([label, value]) => el("div", { class: "counter" }, el("b", {}, value ?? 0), label)),
  );
}

function showStatus(status) {
  state.status = status;
  const badge = $("race-status");
  badge.textContent = status;
  badge.className = `badge ${status}`;
}

// -- wiring --------------------------------------------------------------------------

async function loadInfo() {
  state.info = await api(`/races/${raceId}`);
  showStatus(state.info.status);
  state.totals = state.info.totals || {};
  const kind = [state.info.sport, state.info.kind, state.info.target_m ? km(state.info.target_m) : null];
  const linked = state.info.linked_route;
  const route = linked ? pageLink("routes", linked.id, linked.name, { class: "route-link" }) : null;
  clear($("race-kind"), kind.filter(Boolean).join(" · "), route ? [" · route: ", route] : null);
}

async function main() {
  state.me = await header();
  if (state.me) $("around-me").hidden = false;
  try {
    await loadInfo();
  } catch (error) {
    $("race-error").textContent = error.status === 404 ? "There is no such race." : error.message;
    return;
  }
  document.title = `${state.info.name} · Arena`;
  $("race-name").textContent = state.info.name;
  const select = $("category");
  for (const name of state.info.categories || []) select.append(el("option", { value: name }, name));
  select.hidden = !(state.info.categories || []).length;
  select.addEventListener("change", () => {
    state.category = select.value;
    board.scrollTop = 0;
    refreshWindow();
  });
  let typing;
  $("search").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.q = event.target.value.trim();
      board.scrollTop = 0;
      refreshWindow();
    }, 200);
  });
  drawCourse(state.info);
  drawTotals();
  setInterval(tickClock, 250);
  const live = stream(() => `/api/v1/races/${raceId}/live?n=100`, {
    status: async ({ status }) => {
      showStatus(status);
      await loadInfo().catch(() => {});
      if (["final", "cancelled"].includes(status)) live.close();
    },
    leaderboard: (tick) => {
      state.skew = tick.at - Date.now() / 1000;
      state.entries = tick.entries;
      state.totals = tick.totals;
      state.signalLost = tick.signal_lost.length;
      document.body.dataset.version = tick.version;
      drawTotals();
      refreshWindow();
      refreshFollowed().then(drawDots);
      refreshAround();
    },
  });
}

main();
