// The athlete's page: level, points and badges, workouts, weekly totals as a chart, records, races, live notifications.
import { accessToken, api, clear, clock, el, header, km, requireLogin, stream, when } from "/static/common.js";

const $ = (id) => document.getElementById(id);

function weekly(items) {
  const weeks = new Map();
  for (const item of items) weeks.set(item.period, (weeks.get(item.period) || 0) + item.distance_m);
  const shown = [...weeks].sort(([a], [b]) => (a < b ? -1 : 1)).slice(-12);
  const svg = $("weekly");
  if (!shown.length) {
    clear(svg, el("text", { x: 20, y: 100 }, "No workouts yet."));
    return;
  }
  const most = Math.max(...shown.map(([, m]) => m), 1);
  const width = 600 / shown.length;
  clear(
    svg,
    shown.map(([period, metres], i) => {
      const h = (metres / most) * 150;
      return el(
        "g",
        { class: "week", "data-period": period },
        el("rect", { x: i * width + 6, y: 170 - h, width: width - 12, height: Math.max(h, 1) }, el("title", {}, `${period}: ${km(metres)}`)),
        el("text", { x: i * width + 6, y: 185 }, period.slice(5)),
        el("text", { x: i * width + 6, y: 165 - h }, km(metres)),
      );
    }),
  );
}

function records(bySport) {
  const rows = [];
  for (const [sport, record] of Object.entries(bySport)) {
    for (const [effort, best] of Object.entries(record.efforts || {})) {
      rows.push(el("tr", {}, el("td", {}, sport), el("td", {}, effort), el("td", {}, clock(best.seconds)), el("td", {}, best.date)));
    }
    if (record.longest) {
      rows.push(el("tr", {}, el("td", {}, sport), el("td", {}, "longest"), el("td", {}, km(record.longest.distance_m)), el("td", {}, record.longest.date)));
    }
  }
  clear(
    $("records"),
    rows.length
      ? el("table", {}, el("thead", {}, el("tr", {}, ["Sport", "Effort", "Best", "Date"].map((h) => el("th", {}, h)))), el("tbody", { id: "records-body" }, rows))
      : el("p", { class: "muted" }, "No records yet."),
  );
}

function achievements(mine) {
  $("level").textContent = mine.level;
  $("points").textContent = mine.points.toLocaleString();
  const next = mine.next_level_points;
  $("next-level").textContent = next === null ? "the top level" : `${(next - mine.points).toLocaleString()} to level ${mine.level + 1}`;
  const progress = $("level-progress");
  progress.max = next === null ? 1 : next - mine.level_points;
  progress.value = next === null ? 1 : mine.points - mine.level_points;
  clear(
    $("badges"),
    mine.badges.length
      ? mine.badges.map((b) => el("li", { class: "badge-earned", "data-badge": b.id, title: b.description }, el("b", {}, b.title), el("span", { class: "muted" }, ` ${when(b.at)}`)))
      : el("li", { class: "muted" }, "No badges yet."),
  );
}

function describe(item) {
  const data = item.data || {};
  switch (item.type) {
    case "race_result":
      return `Your race result: ${data.place ? `#${data.place}` : (data.status || "").toUpperCase()}`;
    case "kudos":
      return "Someone gave you kudos";
    case "comment":
      return "New comment on your workout";
    case "badge":
      return `You earned a badge: ${data.title}`;
    case "friend_badge":
      return `${data.user_name || "An athlete you follow"} earned a badge: ${data.title}`;
    case "level":
      return `You reached level ${data.level}`;
    case "challenge_completed":
      return `You completed the challenge ${data.title}`;
    case "friend_challenge":
      return `${data.user_name || "An athlete you follow"} completed the challenge ${data.title}`;
    case "group_invitation":
      return "You are invited to join a group";
    case "group_event_reminder":
      return `${data.title} starts in ${data.lead === "1h" ? "an hour" : "24 hours"} at ${data.meeting_point}`;
    case "group_event_changed":
      return `${data.title} has moved: now ${new Date(data.start * 1000).toLocaleString()} at ${data.meeting_point}`;
    case "group_event_cancelled":
      return `${data.title} is cancelled`;
    case "group_event_promoted":
      return `A place freed up: you are going to ${data.title}`;
    default:
      return item.type.replaceAll("_", " ");
  }
}

function notificationItem(item) {
  const url = item.data?.url;  // a group, an event or a challenge: the page it is about
  const text = url && url.startsWith("/") && !url.startsWith("//") ? el("a", { href: url }, describe(item)) : describe(item);
  return el("li", { class: item.read ? "" : "unread", "data-type": item.type }, el("b", {}, text), el("div", { class: "muted" }, when(item.at)));
}

async function main() {
  const account = await header();
  if (!requireLogin(account)) return;
  $("me-name").textContent = account.profile?.display_name || "My page";
  const offset = -new Date().getTimezoneOffset();
  const [mine, workouts, totals, prs, inbox] = await Promise.all([
    api("/me/achievements"),
    api(`/users/${account.id}/workouts?limit=50`),
    api(`/me/analytics/totals?period=week&tz_offset_minutes=${offset}`),
    api(`/me/analytics/records?tz_offset_minutes=${offset}`),
    api("/notifications?limit=20"),
  ]);
  clear(
    $("workouts"),
    workouts.items.map((w) =>
      el("tr", {}, el("td", {}, when(w.start)), el("td", {}, w.title || w.sport), el("td", {}, km(w.distance_m)), el("td", {}, clock(w.moving_s))),
    ),
  );
  if (!workouts.items.length) $("workouts").append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No workouts yet.")));
  const races = workouts.items.filter((w) => w.race_id);
  clear(
    $("my-races"),
    races.length
      ? races.map((w) => el("li", {}, el("a", { href: `/races/${encodeURIComponent(w.race_id)}` }, w.title), ` ${km(w.distance_m)} in ${clock(w.elapsed_s)}`))
      : el("li", { class: "muted" }, "No race results yet."),
  );
  achievements(mine);
  weekly(totals.items);
  records(prs);
  const list = $("notifications");
  const shown = new Set();
  const show = (items) => {
    // Oldest first, each on top: the newest ends up first. Seen ids are skipped,
    // so the catch-up after "ready" and the live events never double an item.
    for (const item of [...items].reverse()) {
      if (shown.has(item.id)) continue;
      shown.add(item.id);
      list.prepend(notificationItem(item));
    }
  };
  clear(list);
  show(inbox.items);
  $("unread").textContent = inbox.unread ?? 0;
  stream(async () => `/api/v1/notifications/stream?access_token=${encodeURIComponent(await accessToken())}`, {
    // Subscribed (also after a reconnect): whatever arrived before it is in the inbox.
    ready: async () => {
      const now = await api("/notifications?limit=20");
      show(now.items);
      $("unread").textContent = now.unread ?? 0;
      document.body.dataset.notifications = "live";
    },
    notification: (event) => {
      if (shown.has(event.notification.id)) return;
      if (event.notification.type === "badge") api("/me/achievements").then(achievements);
      show([event.notification]);
      $("unread").textContent = Number($("unread").textContent) + 1;
    },
  });
}

main();
