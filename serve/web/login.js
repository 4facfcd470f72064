import { api, header, login } from "/static/common.js";

header();
const next = new URLSearchParams(location.search).get("next");
const destination = next && next.startsWith("/") && !next.startsWith("//") ? next : "/me";

async function signIn(email, password, errorBox) {
  errorBox.textContent = "";
  try {
    await login(email, password);
    location.href = destination;
  } catch (error) {
    errorBox.textContent =
      error.status === 401 ? "Wrong email or password." : error.message || "Signing in failed.";
  }
}

document.getElementById("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(
    document.getElementById("email").value,
    document.getElementById("password").value,
    document.getElementById("login-error"),
  );
});

document.getElementById("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const errorBox = document.getElementById("register-error");
  const email = document.getElementById("reg-email").value;
  const password = document.getElementById("reg-password").value;
  try {
    await api("/accounts", {
      method: "POST",
      body: { email, password, display_name: document.getElementById("reg-name").value },
    });
  } catch (error) {
    errorBox.textContent = error.message;
    return;
  }
  signIn(email, password, errorBox);
});
