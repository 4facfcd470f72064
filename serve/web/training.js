// My training: the fitness/fatigue/form chart (inline SVG), today's figures, warnings, thresholds, predictions,
// and this week's plan toward the goal race.
import { api, clear, clock, el, header, requireLogin } from "/static/common.js";

const $ = (id) => document.getElementById(id);
const fixed = (value, digits = 1) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));

function line(points, cls, dashed) {
  return el("polyline", { class: cls, points: points.join(" "), fill: "none", "stroke-dasharray": dashed ? "6 4" : null });
}

function chart(days, ahead) {
  const svg = $("pmc");
  const all = [...days, ...ahead];
  if (!all.length) return;
  const values = all.flatMap((d) => [d.fitness, d.fatigue, d.form]);
  const top = Math.max(10, ...values);
  const bottom = Math.min(-10, ...values);
  const x = (i) => 30 + (i / Math.max(1, all.length - 1)) * 560;
  const y = (v) => 10 + ((top - v) / (top - bottom)) * 210;
  const series = (rows, offset, key) => rows.map((d, i) => `${x(i + offset).toFixed(1)},${y(d[key]).toFixed(1)}`);
  const shapes = [el("line", { class: "zero", x1: 30, x2: 590, y1: y(0), y2: y(0) })];
  for (const key of ["fitness", "fatigue", "form"]) {
    shapes.push(line(series(days, 0, key), `series ${key}`, false));
    if (ahead.length) shapes.push(line(series(ahead, days.length, key), `series ${key} ahead`, true));
  }
  shapes.push(el("text", { x: 2, y: y(top) + 4 }, Math.round(top)), el("text", { x: 2, y: y(bottom) }, Math.round(bottom)));
  clear(svg, shapes);
  svg.dataset.days = String(days.length);
}

function today(status) {
  const rows = [
    ["Fitness (CTL)", fixed(status.fitness)],
    ["Fatigue (ATL)", fixed(status.fatigue)],
    ["Form (TSB)", fixed(status.form)],
    ["Acute:chronic ratio", fixed(status.acwr, 2)],
    ["Monotony", fixed(status.monotony, 2)],
    ["Strain", fixed(status.strain, 0)],
    ["Ramp (per week)", fixed(status.ramp)],
    ["Load this week", fixed(status.week_load, 0)],
  ];
  clear($("today"), rows.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", { class: "figure" }, value))));
  clear(
    $("warnings"),
    status.warnings.length
      ? status.warnings.map((w) => el("li", { class: `warning ${w.warning}`, "data-warning": w.warning }, el("strong", {}, w.warning.replace("_", " ")), " ", w.reason))
      : el("li", { class: "muted", id: "no-warnings" }, "No warnings: your load is in line."),
  );
  const names = { ftp_w: "FTP (W)", threshold_hr: "Threshold heart rate", max_hr: "Max heart rate", rest_hr: "Resting heart rate", threshold_pace_s_per_km: "Threshold pace (/km)" };
  clear(
    $("thresholds"),
    Object.entries(status.thresholds).map(([key, t]) =>
      el("tr", {}, el("th", {}, names[key] || key), el("td", {}, t.value === null ? "unknown" : key.endsWith("per_km") ? clock(t.value) : fixed(t.value, 0)), el("td", { class: "muted" }, t.source)),
    ),
  );
}

function predictions(answer) {
  $("prediction-model").textContent =
    answer.model === "fitted" ? `Your own exponent, fitted from ${answer.efforts} best efforts: ${fixed(answer.exponent, 3)}` : answer.model === "riegel" ? "Riegel's exponent 1.06 from one best effort (a wider band)" : "No best efforts yet: import a run with a track.";
  clear(
    $("predictions"),
    answer.races.map((r) => el("tr", { class: "prediction", "data-race": r.race }, el("td", {}, r.race), el("td", { class: "figure" }, clock(r.seconds)), el("td", { class: "muted" }, `${clock(r.low_s)} – ${clock(r.high_s)}`))),
  );
}

function plan(answer) {
  if (!answer) return;
  const race = answer.race;
  $("plan-goal").textContent = `${(race.distance_m / 1000).toFixed(1)} km ${race.sport} on ${race.day}: ${answer.weeks[0].why}`;
  clear(
    $("plan"),
    answer.days.map((d) =>
      el("tr", { class: `plan-day ${d.type}`, "data-type": d.type }, el("th", {}, d.weekday), el("td", {}, d.type), el("td", { class: "figure" }, d.minutes ? `${d.minutes} min` : ""), el("td", { class: "muted" }, [d.target.text, d.why].filter(Boolean).join(" · "))),
    ),
  );
}

async function main() {
  const account = await header();
  if (!requireLogin(account)) return;
  const [status, days, ahead, predicted, planned] = await Promise.all([
    api("/me/training"),
    api("/me/training/days"),
    api("/me/training/forecast?weeks=6"),
    api("/me/training/predictions"),
    api("/me/training/plan").catch(() => null), // 404: no goal race set
  ]);
  today(status);
  plan(planned);
  chart(days.items, ahead.days);
  predictions(predicted);
  document.body.dataset.ready = "yes";
}

main();
