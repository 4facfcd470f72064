// An organizer's event: when (in its own time zone) and where, its tiers and the places left, its races and
// route, registering (a tier, the questions answered) or joining the waitlist, my status and check-in code
// (drawn as a QR code too), cancelling, partner offers and the link to my calendar feed.
import { api, clear, el, header } from "/static/common.js";

const eventId = decodeURIComponent(location.pathname.split("/")[2] || "");
const path = `/events/${encodeURIComponent(eventId)}`;
const $ = (id) => document.getElementById(id);

// Only http(s) addresses become links: the API checks them too, the page does not rely on it.
function outward(address) {
  try {
    return ["http:", "https:"].includes(new URL(address).protocol) ? address : null;
  } catch {
    return null;
  }
}

// The event's times as they read at the venue, in its own time zone (a zone this browser lacks: UTC).
function span(event) {
  const options = { dateStyle: "full", timeStyle: "short" };
  let format;
  try {
    format = new Intl.DateTimeFormat(undefined, { ...options, timeZone: event.time_zone });
  } catch {
    format = new Intl.DateTimeFormat(undefined, { ...options, timeZone: "UTC" });
  }
  const zone = format.resolvedOptions().timeZone;
  return `${format.formatRange(new Date(event.start * 1000), new Date(event.end * 1000))} (${zone})`;
}

function price(tier) {
  if (!tier.price) return "Free";
  return new Intl.NumberFormat(undefined, { style: "currency", currency: tier.currency }).format(tier.price);
}

// Places left in a tier: its own capacity and the event's, whichever runs out first.
function placesLeft(event, tier) {
  const overall = event.capacity - event.registered;
  const own = tier.capacity === null ? overall : tier.capacity - tier.taken;
  return Math.max(0, Math.min(overall, own));
}

function places(event, tier) {
  const left = placesLeft(event, tier);
  return left ? `${left.toLocaleString()} place${left === 1 ? "" : "s"} left` : "waitlist";
}

function showTiers(event) {
  clear(
    $("tiers"),
    event.tiers.map((tier) =>
      el(
        "tr",
        { "data-tier": tier.id },
        el("td", { class: "name" }, tier.name),
        el("td", {}, price(tier)),
        el("td", { class: "places" }, places(event, tier)),
      ),
    ),
  );
  const chosen = $("tier").value;
  clear(
    $("tier"),
    event.tiers.map((tier) =>
      el("option", { value: tier.id }, `${tier.name} · ${price(tier)} · ${places(event, tier)}`),
    ),
  );
  if (chosen) $("tier").value = chosen;
}

function question(q) {
  const id = `answer-${q.id}`;
  const field =
    q.kind === "choice"
      ? el(
          "select",
          { id, "data-question": q.id, required: q.required },
          el("option", { value: "" }, "–"),
          q.choices.map((choice) => el("option", { value: choice }, choice)),
        )
      : el("input", { id, "data-question": q.id, maxlength: 300, required: q.required });
  return el("label", { for: id }, el("span", {}, q.required ? `${q.label} *` : q.label), " ", field);
}

async function showProgram(event) {
  const [races, route] = await Promise.all([
    Promise.all(event.races.map((id) => api(`/races/${encodeURIComponent(id)}`).catch(() => null))),
    event.route_id ? api(`/routes/${encodeURIComponent(event.route_id)}`).catch(() => null) : null,
  ]);
  clear(
    $("races"),
    event.races.map((id, i) =>
      el(
        "li",
        { "data-race": id },
        el("a", { href: `/races/${encodeURIComponent(id)}` }, races[i]?.name || `Race ${id}`),
      ),
    ),
  );
  $("route").hidden = !event.route_id;
  if (event.route_id) {
    clear(
      $("route"),
      "Route: ",
      el("a", { id: "route-link", href: `/routes/${encodeURIComponent(event.route_id)}` }, route?.name || "the route"),
    );
  }
  $("program").hidden = !event.races.length && !event.route_id;
}

async function showOffers() {
  let shown;
  try {
    shown = (await api(`${path}/partners`)).items.filter((offer) => outward(offer.link));
  } catch {
    clear($("offers"), el("li", { class: "muted" }, "The partner offers could not be loaded."));
    return;
  }
  clear(
    $("offers"),
    shown.length
      ? shown.map((offer) =>
          el(
            "li",
            { class: "offer", "data-offer": offer.id },
            el("span", { class: "badge" }, offer.kind),
            " ",
            el("a", { href: offer.link, target: "_blank", rel: "noopener sponsored" }, offer.title),
            " ",
            el("span", { class: "muted attribution" }, offer.attribution),
          ),
        )
      : el("li", { class: "muted" }, "No partner offers near this event."),
  );
}

function statusText(mine, event) {
  const tier = event.tiers.find((t) => t.id === mine.tier)?.name || mine.tier;
  if (mine.status === "waitlisted") return `On the waitlist (${tier}), position ${mine.position}`;
  const bib = mine.bib ? ` · bib ${mine.bib}` : "";
  const payment = mine.payment === "pending" ? " · payment pending (paid to the organizer)" : "";
  const checked = mine.checked_in_at ? " · checked in" : "";
  return `Registered (${tier})${bib}${payment}${checked}`;
}

// The ticket drawn as a QR code for the organizer's scanner: our own API's SVG, fetched with the sign-in an
// <img> could not send, parsed as SVG (never as HTML) and put in as a node. Without it the text code stays.
async function showQr(ticket) {
  if (!ticket) {
    clear($("ticket-qr"));
    return;
  }
  try {
    const answer = await api(`${path}/registrations/me/qr.svg`, { raw: true });
    const drawn = new DOMParser().parseFromString(await answer.text(), "image/svg+xml").documentElement;
    const svg = drawn.namespaceURI === "http://www.w3.org/2000/svg" && drawn.localName === "svg";
    clear($("ticket-qr"), svg ? document.importNode(drawn, true) : null);
  } catch {
    clear($("ticket-qr"));
  }
}

async function showRegistration(event) {
  const open = event.status === "scheduled" && !event.started;
  const mine = event.me ? await api(`${path}/registrations/me`) : null;
  $("closed").hidden = open || Boolean(mine);
  $("closed").textContent =
    event.status === "cancelled" ? "This event was cancelled." : "Registration is closed: the event has started.";
  $("register-form").hidden = !open || Boolean(mine);
  $("mine").hidden = !mine;
  $("mine").dataset.status = mine?.status || "";
  if (!mine) {
    $("calendar").hidden = true;
    return;
  }
  $("my-status").textContent = statusText(mine, event);
  $("my-ticket").hidden = !mine.ticket;
  $("ticket").textContent = mine.ticket || "";
  await showQr(mine.ticket);
  $("cancel").hidden = !open;
  const online = mine.status === "registered" ? outward(event.online_url) : null;
  $("online").hidden = !online;
  if (online) clear($("online"), el("a", { href: online, target: "_blank", rel: "noopener" }, "Join online"));
  const feed = await api("/me/calendar-token");
  $("calendar").setAttribute("href", feed.url);
  $("calendar").hidden = false;
}

async function refresh() {
  const event = await api(path);
  showTiers(event);
  await showRegistration(event);
}

// One change at a time: the buttons wait for the answer (a double click registers once anyway).
async function change(work) {
  $("register-error").textContent = "";
  $("register").disabled = $("cancel").disabled = true;
  try {
    await work();
    await refresh();
  } catch (error) {
    $("register-error").textContent = error.message;
  } finally {
    $("register").disabled = $("cancel").disabled = false;
  }
}

function register(submitted) {
  submitted.preventDefault();
  const answers = {};
  for (const field of $("questions").querySelectorAll("[data-question]")) {
    if (field.value.trim()) answers[field.dataset.question] = field.value;
  }
  const body = { tier: $("tier").value, answers };
  return change(() => api(`${path}/registrations`, { method: "POST", body }));
}

async function organizerName(userId) {
  try {
    return (await api(`/users/${encodeURIComponent(userId)}`)).display_name || "an organizer";
  } catch {
    return "an organizer";
  }
}

async function main() {
  if (!(await header())) {
    $("signin-link").setAttribute("href", `/login?next=${encodeURIComponent(location.pathname)}`);
    $("signin").hidden = false;
    document.body.dataset.ready = "yes";
    return;
  }
  let event;
  try {
    event = await api(path);
  } catch (error) {
    $("event-title").textContent = error.status === 404 ? "No such event" : "Event";
    $("event-error").textContent = error.status === 404 ? "There is no such event." : error.message;
    return;
  }
  document.title = `${event.title} · Arena`;
  $("event-title").textContent = event.title;
  $("event-when").textContent = span(event);
  $("event-where").textContent = event.online ? "Online" : event.venue.address;
  $("event-description").textContent = event.description;
  for (const q of event.questions) $("questions").append(question(q));
  $("register-form").addEventListener("submit", register);
  $("cancel").addEventListener("click", () =>
    change(() => api(`${path}/registrations/me`, { method: "DELETE" })),
  );
  showTiers(event);
  $("event-body").hidden = false;
  const [organizer] = await Promise.all([
    organizerName(event.organizer),
    showProgram(event),
    showOffers(),
    showRegistration(event).catch((error) => ($("register-error").textContent = error.message)),
  ]);
  $("event-facts").textContent = `${event.sport} · organized by ${organizer}`;
  document.body.dataset.ready = "yes";
}

main();
