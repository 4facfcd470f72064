// Shared by every page: the API client (tokens, refresh on 401), safe DOM building, formats.
// User data only ever reaches the page through textContent or attributes, never as markup.

const API = "/api/v1";
const KEY = "arena.session";

export function session() {
  try {
    return JSON.parse(localStorage.getItem(KEY)) || null;
  } catch {
    return null;
  }
}

function keep(tokens) {
  if (tokens) localStorage.setItem(KEY, JSON.stringify(tokens));
  else localStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let refreshing = null;

async function refresh() {
  const current = session();
  if (!current) return false;
  refreshing ??= fetch(`${API}/auth/refresh`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: current.refresh_token }),
  })
    .then(async (answer) => {
      keep(answer.ok ? await answer.json() : null);
      return answer.ok;
    })
    .finally(() => (refreshing = null));
  return refreshing;
}

// fetch an API path; JSON in and out, one retry after refreshing an expired access token.
export async function api(path, { method = "GET", body, raw = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = {};
    const tokens = session();
    if (tokens) headers.Authorization = `Bearer ${tokens.access_token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const answer = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (answer.status === 401 && tokens && attempt === 0 && (await refresh())) continue;
    if (!answer.ok) {
      let problem = {};
      try {
        problem = await answer.json();
      } catch {
        /* not a problem document */
      }
      throw new ApiError(answer.status, problem);
    }
    if (raw) return answer;
    return answer.status === 204 ? null : answer.json();
  }
}

export async function login(email, password) {
  const answer = await fetch(`${API}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new ApiError(answer.status, body);
  keep(body);
  return body;
}

export async function logout() {
  try {
    if (session()) await api("/auth/logout", { method: "POST" });
  } finally {
    keep(null);
  }
}

let me = null;
// The signed-in account, or null.
export async function whoami() {
  if (!session()) return null;
  me ??= api("/me").catch(() => null);
  return me;
}

export async function accessToken() {
  await whoami(); // refreshes an expired token on the way
  return session()?.access_token;
}

// el("a", {href: "/"}, "text", child): children are text or nodes, never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(
    ["svg", "polyline", "path", "circle", "rect", "text", "g", "line"].includes(tag)
      ? "http://www.w3.org/2000/svg"
      : "http://www.w3.org/1999/xhtml",
    tag,
  );
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A link to one of Arena's own pages: "/routes/<id>" and the like, ids encoded, never a URL from data
// (the community pages build no href themselves: tests/test_probes_community.py).
export function pageLink(section, id, text, attrs = {}) {
  if (!/^[a-z-]+$/.test(section)) throw new Error(`not a page section: ${section}`);
  return el("a", { ...attrs, href: `/${section}/${encodeURIComponent(String(id))}` }, text);
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export function km(metres) {
  if (metres === null || metres === undefined || Number.isNaN(metres)) return "–";
  return metres >= 1000 ? `${(metres / 1000).toFixed(2)} km` : `${Math.round(metres)} m`;
}

export function clock(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function when(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "–";
}

// Save an authenticated download (the CSV needs the Authorization header a plain link lacks).
export async function download(path, filename) {
  const answer = await api(path, { raw: true });
  const url = URL.createObjectURL(await answer.blob());
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// The header of every page: where to go, and who is signed in.
export async function header() {
  const bar = document.getElementById("top");
  const account = await whoami();
  const links = [
    el("a", { href: "/", class: "brand" }, "Arena"),
    el("a", { href: "/me" }, "My page"),
    el("a", { href: "/me/training" }, "My training"),
    el("a", { href: "/gear" }, "My gear"),
    el("a", { href: "/offers" }, "Offers"),
    el("a", { href: "/organizer" }, "Organizer"),
  ];
  const right = account
    ? el(
        "span",
        { class: "who" },
        el("span", { id: "who-name" }, account.profile?.display_name || account.email || "signed in"),
        el(
          "button",
          {
            id: "logout",
            type: "button",
            onclick: async () => {
              await logout();
              location.href = "/login";
            },
          },
          "Sign out",
        ),
      )
    : el("a", { id: "login-link", href: `/login?next=${encodeURIComponent(location.pathname)}` }, "Sign in");
  clear(bar, el("nav", {}, links), right);
  return account;
}

export function requireLogin(account) {
  if (!account) location.replace(`/login?next=${encodeURIComponent(location.pathname)}`);
  return Boolean(account);
}

// A Server-Sent Events stream that reconnects with a fresh URL (tokens expire) after errors.
export function stream(makeUrl, handlers) {
  let source = null;
  let closed = false;
  async function open() {
    if (closed) return;
    source = new EventSource(await makeUrl());
    for (const [type, handler] of Object.entries(handlers)) {
      source.addEventListener(type, (event) => handler(type === "open" ? null : JSON.parse(event.data)));
    }
    // The server ends a stream when its token expires (reopen with a fresh one) or its
    // session is revoked (signed out elsewhere: stay closed).
    source.addEventListener("end", (event) => {
      source.close();
      if (JSON.parse(event.data).reason === "expired") open();
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setTimeout(open, 2000);
    };
  }
  open();
  return { close: () => ((closed = true), source?.close()) };
}
