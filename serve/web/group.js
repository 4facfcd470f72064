// A group's page: about (with the join button its policy allows), events with RSVP, the feed with a
// post form for members, the week's leaderboard and the members, paged. What a non-member may not
// read (a private group's content) is said so, section by section.
import { ApiError, api, clear, clock, el, header, km, pageLink, requireLogin } from "/static/common.js";

const $ = (id) => document.getElementById(id);
const groupId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const base = `/groups/${encodeURIComponent(groupId)}`;
let membersCursor = null;

function refused(list, error) {
  const why = error instanceof ApiError && error.status === 403 ? error.message : `Could not load: ${error.message}`;
  clear(list, el("li", { class: "muted refused" }, why));
}

function about(group) {
  document.title = `${group.name} · Arena`;
  $("group-name").textContent = group.name;
  $("group-description").textContent = group.description || "";
  const place = [group.city, group.region].filter(Boolean).join(", ");
  $("group-facts").textContent = [
    (group.sports || []).join(", "),
    place,
    `${group.members} member${group.members === 1 ? "" : "s"}`,
    `${group.visibility}, ${group.join_policy === "open" ? "open to all" : group.join_policy === "request" ? "by request" : "by invitation"}`,
  ]
    .filter(Boolean)
    .join(" · ");
  $("member-count").textContent = group.members;
  const me = group.me || {};
  const act = (label, path, secondary = false) =>
    el("button", { id: "membership-action", type: "button", class: secondary ? "secondary" : undefined, onclick: () => change(path) }, label);
  let controls;
  if (me.role === "owner") controls = el("span", { class: "badge", id: "my-role" }, "owner");
  else if (me.role) controls = [el("span", { class: "badge", id: "my-role" }, me.role), act("Leave", "leave", true)];
  else if (me.standing === "banned") controls = el("span", { class: "muted" }, "You are banned from this group.");
  else if (me.standing === "requested") controls = [el("span", { class: "muted" }, "Your request is waiting. "), act("Withdraw", "leave", true)];
  else if (me.standing === "invited") controls = act("Accept the invitation", "join");
  else if (group.join_policy === "open") controls = act("Join", "join");
  else if (group.join_policy === "request") controls = act("Ask to join", "join");
  else controls = el("span", { class: "muted" }, "Members join by invitation.");
  clear($("membership"), controls);
  $("post-form").hidden = !me.role;
}

async function change(path) {
  try {
    await api(`${base}/${path}`, { method: "POST" });
    await load();
  } catch (error) {
    $("group-error").textContent = error.message;
  }
}

function eventItem(event, member) {
  const me = event.me || {};
  const rsvp = (going) => async () => {
    try {
      await api(`${base}/events/${event.id}/rsvp`, { method: "PUT", body: { going } });
      await events(member);
    } catch (error) {
      $("group-error").textContent = error.message;
    }
  };
  const status = event.status === "cancelled" ? el("span", { class: "badge dsq" }, "cancelled") : null;
  const mine = me.rsvp
    ? el("span", { class: "badge finished my-rsvp" }, me.rsvp === "waitlisted" ? `waitlist #${me.position}` : me.rsvp.replace("_", " "))
    : null;
  const buttons =
    member && event.status === "scheduled" && !event.started
      ? el(
          "span",
          { class: "toolbar" },
          el("button", { type: "button", class: "rsvp-yes", onclick: rsvp(true), disabled: me.rsvp === "going" || me.rsvp === "waitlisted" }, "Going"),
          el("button", { type: "button", class: "secondary rsvp-no", onclick: rsvp(false), disabled: me.rsvp === "not_going" }, "Not going"),
        )
      : null;
  const paces = (event.pace_groups || []).map((p) => p.label).join(", ");
  return el(
    "li",
    { class: "event", id: `event-${event.id}`, "data-event": event.id },
    el("b", { class: "event-title" }, event.title),
    status,
    mine,
    el("div", { class: "muted" }, `${event.start_local.replace("T", " ").slice(0, 16)} (${event.time_zone}) · ${event.sport} · ${event.meeting_point.label}`),
    el("div", { class: "muted" }, `${event.going}/${event.capacity} going${event.waitlist ? `, ${event.waitlist} waiting` : ""}${paces ? ` · pace groups: ${paces}` : ""}${event.route ? ` · ${event.route}` : ""}`),
    event.linked_route
      ? el("div", { class: "muted" }, "Route: ", pageLink("routes", event.linked_route.id, event.linked_route.name, { class: "route-link" }), ` · ${km(event.linked_route.distance_m)}`)
      : null,
    buttons,
  );
}

async function events(member) {
  try {
    const page = await api(`${base}/events?when=upcoming`);
    clear($("events"), page.items.length ? page.items.map((e) => eventItem(e, member)) : el("li", { class: "muted" }, "No events to come."));
  } catch (error) {
    refused($("events"), error);
  }
}

function feedItem(item) {
  const together = item.together
    ? el("div", { class: "together" }, `Did it together at ${item.together.title}`, item.together.athletes.length ? ` with ${item.together.athletes.map((a) => a.name).join(", ")}` : "")
    : null;
  if (item.type === "post") {
    return el("li", { class: "post", "data-item": item.id }, el("b", {}, item.owner_name || "A member"), ": ", item.text, el("span", { class: "muted" }, ` · ${item.kudos} kudos`));
  }
  return el(
    "li",
    { class: "workout", "data-item": item.id },
    el("b", {}, item.owner_name || "A member"),
    ` ${item.title || item.sport} · ${km(item.distance_m)} · ${clock(item.moving_s)}`,
    together,
  );
}

async function feed() {
  try {
    const page = await api(`${base}/feed`);
    clear($("feed"), page.items.length ? page.items.map(feedItem) : el("li", { class: "muted" }, "Nothing yet."));
  } catch (error) {
    refused($("feed"), error);
  }
}

async function board() {
  try {
    const week = await api(`${base}/leaderboard`);
    clear(
      $("board"),
      week.rows.length
        ? week.rows.map((r) => el("tr", { class: "board-row" }, el("td", {}, r.rank), el("td", {}, r.name || "–"), el("td", {}, km(r.distance_m)), el("td", {}, r.workouts)))
        : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No workouts this week.")),
    );
  } catch (error) {
    clear($("board"), el("tr", {}, el("td", { colspan: 4, class: "muted refused" }, error.message)));
  }
}

async function members(more = false) {
  try {
    const query = more && membersCursor ? `?cursor=${encodeURIComponent(membersCursor)}` : "";
    const page = await api(`${base}/members${query}`);
    const items = page.items.map((m) => el("li", { class: "member", "data-user": m.id }, m.name || "An athlete", m.role === "member" ? null : el("span", { class: "badge" }, m.role)));
    if (more) $("members").append(...items);
    else clear($("members"), items);
    membersCursor = page.next_cursor;
    $("more-members").hidden = !membersCursor;
  } catch (error) {
    refused($("members"), error);
  }
}

async function load() {
  $("group-error").textContent = "";
  let group;
  try {
    group = await api(base);
  } catch (error) {
    $("group-name").textContent = error.status === 404 ? "No such group" : "This group cannot be shown";
    $("group-error").textContent = error.message;
    return;
  }
  about(group);
  const member = Boolean(group.me && group.me.role);
  await Promise.all([events(member), feed(), board(), members()]);
}

$("post-form").addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const text = $("post-text").value.trim();
  if (!text) return;
  try {
    await api(`${base}/posts`, { method: "POST", body: { text } });
    $("post-text").value = "";
    await feed();
  } catch (error) {
    $("group-error").textContent = error.message;
  }
});
$("more-members").addEventListener("click", () => members(true));

const account = await header();
if (requireLogin(account)) await load();
