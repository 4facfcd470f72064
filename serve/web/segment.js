// A segment: its line drawn as SVG from its points, and its leaderboard with tabs (overall with the KOM,
// this year, friends, Local Legend), each for everyone or one sex and age group (the QOM on the women's
// overall board), from GET /segments/{id}/leaderboard.
import { api, clear, clock, el, header, requireLogin } from "/static/common.js";

const $ = (id) => document.getElementById(id);

// A polyline of [lat, lon] points in an SVG, north up, scaled to fit (an equirectangular view).
export function drawLine(points, id) {
  const W = 640;
  const H = 360;
  if (points.length < 2) return el("p", { class: "muted" }, "No track to draw.");
  const mid = (Math.min(...points.map((p) => p[0])) + Math.max(...points.map((p) => p[0]))) / 2;
  const squeeze = Math.cos((mid * Math.PI) / 180);
  const xs = points.map((p) => p[1] * squeeze);
  const ys = points.map((p) => p[0]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const scale = Math.min((W - 20) / (x1 - x0 || 1e-9), (H - 20) / (y1 - y0 || 1e-9));
  const [dx, dy] = [(W - 20 - (x1 - x0) * scale) / 2, (H - 20 - (y1 - y0) * scale) / 2]; // centred
  const at = (i) => [10 + dx + (xs[i] - x0) * scale, H - 10 - dy - (ys[i] - y0) * scale];
  const coords = points.map((_, i) => at(i).map((v) => v.toFixed(1)).join(",")).join(" ");
  const [sx, sy] = at(0);
  const [ex, ey] = at(points.length - 1);
  return el(
    "svg",
    { id, viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "track" },
    el("polyline", { points: coords, fill: "none", stroke: "#d63384", "stroke-width": 3, "stroke-linejoin": "round" }),
    el("circle", { cx: sx.toFixed(1), cy: sy.toFixed(1), r: 6, fill: "#198754" }),
    el("circle", { cx: ex.toFixed(1), cy: ey.toFixed(1), r: 6, fill: "#dc3545" }),
  );
}

let shown = "overall";

async function showBoard(segmentId, board) {
  shown = board;
  for (const tab of document.querySelectorAll(".board")) {
    const chosen = tab.dataset.board === board;
    tab.setAttribute("aria-selected", String(chosen));
    tab.classList.toggle("secondary", !chosen);
  }
  $("figure-head").textContent = board === "legend" ? "Efforts (90 days)" : "Time";
  let answer;
  try {
    const query = new URLSearchParams({ board });
    if ($("board-sex").value) query.set("sex", $("board-sex").value);
    if ($("board-age").value) query.set("age_group", $("board-age").value);
    answer = await api(`/segments/${encodeURIComponent(segmentId)}/leaderboard?${query}`);
  } catch (error) {
    $("segment-error").textContent = error.message;
    return;
  }
  const rows = answer.rows.map((row) =>
    el(
      "tr",
      { class: row.athlete === answer.me?.athlete ? "board-row me" : "board-row" },
      el("td", {}, String(row.rank)),
      el("td", {}, row.athlete),
      el("td", {}, board === "legend" ? String(row.efforts) : clock(row.elapsed_s)),
    ),
  );
  clear($("board-rows"), rows.length ? rows : el("tr", {}, el("td", { colspan: 3 }, "No efforts yet.")));
  const crown = answer.qom || answer.kom || answer.local_legend;
  const title = board === "legend" ? "Local Legend" : answer.qom ? "QOM" : "KOM";
  $("board-note").textContent = crown ? `${title}: ${crown.athlete}` : "";
}

async function main() {
  const segmentId = decodeURIComponent(location.pathname.split("/")[2] || "");
  if (!requireLogin(await header())) return;
  let segment;
  try {
    segment = await api(`/segments/${encodeURIComponent(segmentId)}`);
  } catch (error) {
    $("segment-name").textContent = error.status === 404 ? "No such segment" : "Segment";
    $("segment-error").textContent = error.message;
    return;
  }
  document.title = `${segment.name} · Arena`;
  $("segment-name").textContent = segment.name;
  $("segment-figures").textContent = `${segment.sport} · ${(segment.length_m / 1000).toFixed(2)} km · ${segment.athletes} athletes`;
  clear($("line"), drawLine(segment.points, "segment-line"));
  for (const tab of document.querySelectorAll(".board")) {
    tab.addEventListener("click", () => showBoard(segmentId, tab.dataset.board));
  }
  for (const filter of [$("board-sex"), $("board-age")]) {
    filter.addEventListener("change", () => showBoard(segmentId, shown));
  }
  await showBoard(segmentId, "overall");
}

if (location.pathname.startsWith("/segments/")) main();
