"""The one-page UI at ``/``: type a user id, see the list with "because you watched ...".

Inline (not a package data file) so it ships with the code whatever the build
backend packs. Data is inserted with ``textContent`` only, never as HTML.
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rekko: movie recommendations</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.6rem; margin-bottom: .2rem; }
  form { display: flex; gap: .5rem; align-items: end; margin: 1rem 0; flex-wrap: wrap; }
  label { display: flex; flex-direction: column; font-size: .85rem; color: #555; }
  input, select, button { font-size: 1rem; padding: .35rem .5rem; }
  button { cursor: pointer; }
  #status { color: #555; min-height: 1.4rem; }
  #status.error { color: #b00020; }
  #status.cold { color: #8a5a00; }
  ol { padding-left: 1.6rem; }
  li.rec { margin: .55rem 0; }
  .title { font-weight: 600; }
  .score { color: #777; font-size: .85rem; margin-left: .4rem; font-variant-numeric: tabular-nums; }
  .because { color: #555; font-size: .9rem; }
  footer { margin-top: 2rem; font-size: .8rem; color: #888; }
</style>
</head>
<body>
<h1>rekko</h1>
<p>Movie recommendations from watch history, metadata and descriptions.</p>
<form id="ask">
  <label>User id <input id="user" name="user" type="number" step="1" required autofocus></label>
  <label>How many <select id="n" name="n"><option>5</option><option selected>10</option><option>20</option>
    <option>50</option></select></label>
  <button id="go" type="submit">Recommend</button>
</form>
<p id="status" role="status" aria-live="polite"></p>
<ol id="results"></ol>
<footer><a href="/docs">API docs</a> · <a href="/health">health</a> · artifacts <span id="version">?</span></footer>
<script>
"use strict";
const form = document.getElementById("ask");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");

function say(text, kind) {
  statusLine.textContent = text;
  statusLine.className = kind || "";
}

function errorText(body, response) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) return body.detail.map(d => d.msg).join("; ");
  return "HTTP " + response.status;
}

function render(data) {
  results.replaceChildren();
  document.getElementById("version").textContent = data.artifacts;
  if (data.cold_start) {
    say("User " + data.user_id + " has no watch history: showing the best-rated popular movies (cold start).", "cold");
  } else {
    say("Top " + data.items.length + " for user " + data.user_id + ", who watched " + data.history_size + " movies.");
  }
  for (const item of data.items) {
    const li = document.createElement("li");
    li.className = "rec";
    li.dataset.movieId = item.movie_id;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = item.title;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = item.score.toFixed(3);
    li.append(title, score);
    if (item.based_on_title) {
      const because = document.createElement("div");
      because.className = "because";
      because.textContent = "because you watched " + item.based_on_title;
      li.append(because);
    }
    results.append(li);
  }
}

async function ask(user, n) {
  say("Loading…");
  results.replaceChildren();
  let response, body;
  try {
    response = await fetch("/recommendations/" + encodeURIComponent(user) + "?n=" + encodeURIComponent(n));
    body = await response.json().catch(() => null);
  } catch (err) {
    say("The server did not answer: " + err, "error");
    return;
  }
  if (!response.ok) {
    say("Error: " + errorText(body, response), "error");
    return;
  }
  render(body);
}

form.addEventListener("submit", event => {
  event.preventDefault();
  const user = document.getElementById("user").value.trim();
  const n = document.getElementById("n").value;
  history.replaceState(null, "", "?user=" + encodeURIComponent(user) + "&n=" + encodeURIComponent(n));
  ask(user, n);
});

const params = new URLSearchParams(location.search);
if (params.get("user")) {
  document.getElementById("user").value = params.get("user");
  if (params.get("n")) document.getElementById("n").value = params.get("n");
  ask(params.get("user"), document.getElementById("n").value);
}
</script>
</body>
</html>
"""
