import { api, clear, el, header, when } from "/static/common.js";

header();
const list = document.getElementById("races");
api("/races?limit=30")
  .then(({ items }) =>
    clear(
      list,
      items.length
        ? items.map((race) =>
            el(
              "li",
              {},
              el("a", { href: `/races/${encodeURIComponent(race.id)}` }, race.name),
              el("span", { class: `badge ${race.status}` }, race.status),
              el("span", { class: "muted" }, ` created ${when(race.at)}`),
            ),
          )
        : el("li", { class: "muted" }, "No races yet. Organizers create them in the console."),
    ),
  )
  .catch((error) => clear(list, el("li", { class: "error" }, error.message)));
