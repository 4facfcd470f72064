// A challenge: its goal and period, the signed-in athlete's progress bar, join or leave, and the live
// board (top, around me, friends), read again every few seconds.
import { api, clear, clock, el, header, km, pageLink, requireLogin } from "/static/common.js";

const challengeId = decodeURIComponent(location.pathname.split("/")[2] || "");
const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);
const state = { card: null, view: "top" };

function figure(value, goalType) {
  if (value === null || value === undefined) return "–";
  switch (goalType) {
    case "distance_m":
      return km(value);
    case "moving_s":
    case "single_effort":
      return clock(value);
    case "elevation_m":
      return `${Math.round(value).toLocaleString()} m`;
    case "streak_days":
      return `${value} day${value === 1 ? "" : "s"} in a row`;
    default:
      return `${value} workout${value === 1 ? "" : "s"}`;
  }
}

function goalText(card) {
  const sports = card.sports.length ? ` (${card.sports.join(", ")})` : "";
  if (card.goal_type === "single_effort") return `${card.effort} in under ${clock(card.goal)}${sports}`;
  return `Goal: ${figure(card.goal, card.goal_type)}${sports}`;
}

function showMine(me) {
  const card = state.card;
  const bar = $("my-progress");
  $("join").hidden = Boolean(me);
  $("leave").hidden = !me;
  if (!me) {
    bar.value = 0;
    $("my-figures").textContent = "Not joined yet.";
    return;
  }
  const lower = card.goal_type === "single_effort";
  const share = me.progress === null ? 0 : lower ? Math.min(1, card.goal / me.progress) : Math.min(1, me.progress / card.goal);
  bar.value = share;
  const rank = me.rank ? ` · rank ${me.rank.toLocaleString()}` : "";
  const done = me.completed_at ? " · completed!" : "";
  $("my-figures").textContent = `${figure(me.progress, card.goal_type)} of ${figure(card.goal, card.goal_type)}${rank}${done}`;
  document.body.dataset.joined = "yes";
}

async function refresh() {
  const card = await api(`/challenges/${encodeURIComponent(challengeId)}`);
  state.card = card;
  $("participants").textContent = `${card.participants.toLocaleString()} taking part`;
  showMine(card.me);
  const board = await api(`/challenges/${encodeURIComponent(challengeId)}/leaderboard?view=${state.view}&limit=20`);
  clear(
    $("board-rows"),
    board.rows.length
      ? board.rows.map((row) =>
          el(
            "tr",
            { class: row.user_id === card.me?.user_id ? "me" : null, "data-user": row.user_id },
            el("td", {}, row.rank ?? "–"),
            el("td", { class: "name" }, row.name || "an athlete"),
            el("td", {}, figure(row.progress, card.goal_type)),
            el("td", {}, row.completed ? "✓" : ""),
          ),
        )
      : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "Nobody here yet.")),
  );
  document.body.dataset.view = state.view;
}

async function change(path) {
  try {
    await api(`/challenges/${encodeURIComponent(challengeId)}/${path}`, { method: "POST" });
    $("challenge-error").textContent = "";
    await refresh();
  } catch (error) {
    $("challenge-error").textContent = error.message;
  }
}

async function start() {
  if (!requireLogin(await header())) return;
  try {
    await refresh();
  } catch (error) {
    $("challenge-error").textContent = error.status === 404 ? "No such challenge." : error.message;
    return;
  }
  const card = state.card;
  $("challenge-title").textContent = card.title;
  document.title = `${card.title} · Arena`;
  $("challenge-goal").textContent = goalText(card);
  const linked = card.linked_route;
  if (linked) $("challenge-goal").append(" · route: ", pageLink("routes", linked.id, linked.name, { class: "route-link" }));
  $("challenge-period").textContent = `${card.first_day} to ${card.last_day}, in each athlete's own time zone`;
  $("challenge-description").textContent = card.description;
  $("join").addEventListener("click", () => change("join"));
  $("leave").addEventListener("click", () => change("leave"));
  for (const button of document.querySelectorAll("button.view")) {
    button.addEventListener("click", async () => {
      state.view = button.dataset.view;
      for (const other of document.querySelectorAll("button.view")) {
        other.setAttribute("aria-selected", String(other === button));
        other.classList.toggle("secondary", other !== button);
      }
      await refresh();
    });
  }
  document.body.dataset.ready = "yes";
  setInterval(() => refresh().catch(() => {}), REFRESH_MS);
}

start();
