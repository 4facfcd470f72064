// Offers: the promotions running now, and redeeming a code (once, however many try at the same time).
import { ApiError, api, clear, el, header, requireLogin } from "/static/common.js";

const $ = (id) => document.getElementById(id);

function discount(d) {
  return d.percent ? `${d.percent}% off` : `${(d.amount / 100).toFixed(2)} ${d.currency} off`;
}

async function load() {
  const offers = await api("/offers");
  clear(
    $("offers"),
    offers.items.length
      ? offers.items.map((o) =>
          el(
            "li",
            { class: "offer", "data-offer": o.id },
            el("strong", {}, o.title),
            ` · ${discount(o.discount)} · until ${new Date(o.expires * 1000).toLocaleDateString()}`,
            o.description ? el("div", { class: "muted" }, o.description) : null,
          ),
        )
      : el("li", { class: "muted" }, "No offers right now."),
  );
}

async function redeem(event) {
  event.preventDefault();
  $("redeemed").textContent = "";
  $("redeem-error").textContent = "";
  try {
    const done = await api("/offers/redeem", { method: "POST", body: { code: $("code").value.trim() } });
    $("redeemed").textContent = `${done.code}: ${done.title}, ${discount(done.discount)}`;
  } catch (error) {
    $("redeem-error").textContent = error instanceof ApiError ? error.message : "the code could not be redeemed";
  }
}

if (requireLogin(await header())) {
  $("redeem-form").addEventListener("submit", redeem);
  await load();
  document.body.dataset.ready = "yes";
}
