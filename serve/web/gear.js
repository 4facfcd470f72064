// My gear: each item's wear as a bar, retiring it, replacements from the shop, adding an item.
import { ApiError, api, clear, clock, el, header, km, requireLogin } from "/static/common.js";

const $ = (id) => document.getElementById(id);

function money(minor, currency) {
  return minor === null || minor === undefined ? "" : `${(minor / 100).toFixed(2)} ${currency || ""}`.trim();
}

async function buy(product) {
  const link = await api(`/shop/products/${encodeURIComponent(product.id)}/link`);
  window.open(link.url, "_blank", "noopener");
}

async function suggestions(item) {
  const answer = await api(`/me/gear/${item.id}/suggestions`);
  $("suggestions-card").hidden = false;
  $("suggestions-for").textContent = item.name;
  clear(
    $("suggestions"),
    answer.items.length
      ? answer.items.map((p) =>
          el(
            "li",
            { class: "suggestion", "data-product": p.id },
            el("strong", {}, p.title),
            ` · ${p.brand} · ${money(p.price, p.currency)} `,
            el("button", { type: "button", onclick: () => buy(p) }, "View in shop"),
          ),
        )
      : el("li", { class: "muted" }, "Nothing in the catalogue fits yet."),
  );
}

function item(gear) {
  const wear = gear.wear === null ? null : Math.min(gear.wear, 1);
  const worn = gear.wear !== null && gear.wear >= 0.9;
  return el(
    "li",
    { class: `gear${worn ? " worn" : ""}${gear.retired ? " retired" : ""}`, "data-gear": gear.id },
    el("strong", { class: "gear-name" }, gear.name),
    ` ${[gear.brand, gear.model].filter(Boolean).join(" ")} · ${gear.component || gear.type}`,
    gear.default_for.length ? el("span", { class: "badge" }, `default: ${gear.default_for.join(", ")}`) : null,
    gear.retired ? el("span", { class: "badge" }, "retired") : null,
    el("div", { class: "muted" }, `${km(gear.used_m)}${gear.life_m ? ` of ${km(gear.life_m)}` : ""} · ${clock(gear.time_s)} · ${gear.workouts} workouts`),
    wear === null ? null : el("progress", { class: "wear", max: 100, value: Math.round(wear * 100), title: `${Math.round(gear.wear * 100)}% worn` }),
    el(
      "div",
      {},
      el("button", { type: "button", class: "retire", onclick: () => retire(gear) }, gear.retired ? "Use again" : "Retire"),
      " ",
      el("button", { type: "button", class: "suggest", onclick: () => suggestions(gear) }, "Replacements"),
    ),
  );
}

async function retire(gear) {
  await api(`/me/gear/${gear.id}`, { method: "PATCH", body: { retired: !gear.retired } });
  await load();
}

async function load() {
  const mine = await api("/me/gear");
  clear($("gear-list"), mine.items.length ? mine.items.map(item) : el("li", { class: "muted", id: "no-gear" }, "No gear yet."));
}

async function add(event) {
  event.preventDefault();
  const type = $("gear-type").value;
  const body = {
    type,
    name: $("gear-name").value.trim(),
    sports: [$("gear-sport").value],
    default: $("gear-default").checked,
    start_km: Number($("gear-start").value || 0),
  };
  if (type === "component" && $("gear-component").value) body.component = $("gear-component").value;
  if ($("gear-brand").value.trim()) body.brand = $("gear-brand").value.trim();
  if ($("gear-life").value) body.life_km = Number($("gear-life").value);
  try {
    await api("/me/gear", { method: "POST", body });
    $("gear-error").textContent = "";
    $("gear-form").reset();
    await load();
  } catch (error) {
    $("gear-error").textContent = error instanceof ApiError ? error.message : "could not add the item";
  }
}

if (requireLogin(await header())) {
  $("gear-form").addEventListener("submit", add);
  await load();
  document.body.dataset.ready = "yes";
}
