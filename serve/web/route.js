// A route: its figures, the track drawn as SVG from its points (no map tiles), the elevation profile as an
// SVG area chart, save or unsave, and the GPX download.
import { api, clear, download, el, header, km, requireLogin } from "/static/common.js";
import { drawLine } from "/static/segment.js";

const routeId = decodeURIComponent((location.pathname.split("/")[2] || "").replace(/\.gpx$/, ""));
const $ = (id) => document.getElementById(id);
const W = 640;
const H = 180;

function drawProfile(profile) {
  if (profile.length < 2) return el("p", { class: "muted" }, "No elevation in this route.");
  const far = profile[profile.length - 1][0] || 1;
  const eles = profile.map((p) => p[1]);
  const low = Math.min(...eles);
  const span = Math.max(Math.max(...eles) - low, 10);
  const x = (d) => ((d / far) * W).toFixed(1);
  const y = (e) => (H - 10 - ((e - low) / span) * (H - 30)).toFixed(1);
  const top = profile.map(([d, e], i) => `${i ? "L" : "M"}${x(d)},${y(e)}`).join(" ");
  return el(
    "svg",
    { id: "profile-chart", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "elevation profile" },
    el("path", { d: `${top} L${W},${H} L0,${H} Z`, fill: "#9ec5fe", stroke: "#0d6efd", "stroke-width": 1.5 }),
    el("text", { x: 4, y: 14, "font-size": 12 }, `${Math.round(Math.max(...eles))} m`),
    el("text", { x: 4, y: H - 14, "font-size": 12 }, `${Math.round(low)} m`),
  );
}

function showSaved(saved) {
  const button = $("save");
  button.hidden = false;
  button.dataset.saved = saved ? "yes" : "no";
  button.textContent = saved ? "Saved ✓ (unsave)" : "Save";
}

async function main() {
  if (!requireLogin(await header())) return;
  let route;
  try {
    route = await api(`/routes/${encodeURIComponent(routeId)}`);
  } catch (error) {
    $("route-name").textContent = error.status === 404 ? "No such route" : "Route";
    $("route-error").textContent = error.message;
    return;
  }
  document.title = `${route.name} · Arena`;
  $("route-name").textContent = route.name;
  $("route-figures").textContent =
    `${route.sport} · ${route.surface} · ${km(route.distance_m)} · ` +
    `+${Math.round(route.elevation_gain_m)} m / −${Math.round(route.elevation_loss_m)} m · ${route.visibility}`;
  $("route-description").textContent = route.description || "";
  clear($("track"), drawLine(route.points.map((p) => [p[0], p[1]]), "track-line"));
  clear($("profile"), drawProfile(route.profile));
  showSaved(route.saved);
  $("save").addEventListener("click", async () => {
    const saving = $("save").dataset.saved !== "yes";
    try {
      const answer = await api(`/routes/${encodeURIComponent(routeId)}/saved`, { method: saving ? "PUT" : "DELETE" });
      showSaved(answer.saved);
    } catch (error) {
      $("route-error").textContent = error.message;
    }
  });
  const link = $("gpx");
  link.hidden = false;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    download(`/routes/${encodeURIComponent(routeId)}.gpx`, `route-${routeId}.gpx`).catch((error) => {
      $("route-error").textContent = error.message;
    });
  });
}

main();
