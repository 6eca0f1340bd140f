"""Private by default: loopback unless told, an optional bearer token, allowed Host names, JSON refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="rekko[serve] is not installed")
pytest.importorskip("uvicorn", reason="rekko[serve] is not installed")

from rekko.cli import build_parser  # noqa: E402
from rekko.exceptions import ConfigError  # noqa: E402
from rekko.serve import app as app_module  # noqa: E402
from rekko.serve.app import ENV_TOKEN, PUBLIC_PATHS, AccessPolicy, create_app, read_token  # noqa: E402
from tests.serve_process import serve_env, serving  # noqa: E402
from tests.serve_support import build_artifacts, live_server, wait_for  # noqa: E402

TOKEN = "t0k3n-" + "x" * 26  # 32 visible characters


def request(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """GET with headers; (status, parsed JSON or text, lower-cased headers), error statuses included."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, body, got = r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        status, body, got = exc.code, exc.read(), exc.headers
    lowered = {k.lower(): v for k, v in got.items()}
    text = body.decode("utf-8")
    return status, json.loads(text) if lowered.get("content-type", "").startswith("application/json") else text, lowered


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("serve-security"))


@pytest.fixture(scope="module")
def movie(paths) -> str:
    from rekko.serve.state import load_snapshot

    return str(load_snapshot(paths).recommender.artifacts.movie_ids[0])


@pytest.fixture(scope="module")
def url(paths):
    access = AccessPolicy(token=TOKEN, allowed_hosts=("127.0.0.1", "localhost"))
    with live_server(create_app(paths, reload_interval=None, access=access)) as base:
        yield base


def protected_paths(movie: str) -> list[str]:
    return ["/recommendations/1?n=3", f"/movies/{movie}", f"/movies/{movie}/similar?n=3", "/docs", "/redoc",
            "/openapi.json", "/docs/oauth2-redirect", "/static-offline-docs/swagger-ui.css", "/no-such-path"]


# -- the default address -----------------------------------------------------------------------
def test_rekko_serve_listens_on_loopback_unless_told_otherwise():
    parser = build_parser()
    assert parser.parse_args(["serve"]).host == "127.0.0.1"
    assert parser.parse_args(["serve", "--host", "0.0.0.0"]).host == "0.0.0.0"


# -- the token ----------------------------------------------------------------------------------
def test_without_a_token_every_endpoint_but_health_and_the_page_answers_401_json(url, movie):
    for path in protected_paths(movie):
        status, body, headers = request(url + path)
        assert status == 401, path
        assert "Authorization: Bearer" in body["detail"]
        assert headers["www-authenticate"].startswith("Bearer")
    assert PUBLIC_PATHS == {"/health", "/"}
    assert request(url + "/health")[0] == 200
    assert request(url + "/")[0] == 200


def test_the_right_token_opens_every_endpoint(url, movie):
    for path in protected_paths(movie):
        status, _, _ = request(url + path, bearer())
        assert status == (404 if path == "/no-such-path" else 200), path
    status, body, _ = request(url + "/recommendations/1?n=3", {"Authorization": f"bearer  {TOKEN}"})
    assert status == 200 and len(body["items"]) == 3  # the scheme is case-insensitive (RFC 7235)


@pytest.mark.parametrize("credentials", [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer wrong-token-value",
                                         f"Basic {TOKEN}", f"Token {TOKEN}", "Bearer", TOKEN])
def test_wrong_credentials_get_401_and_are_never_echoed(url, credentials):
    status, body, headers = request(url + "/recommendations/1", {"Authorization": credentials})
    assert status == 401
    assert set(body) == {"detail"}
    assert TOKEN[:8] not in json.dumps(body) and "wrong-token" not in json.dumps(body)
    assert headers["cache-control"] == "no-store"


def test_the_token_is_compared_in_constant_time(url, monkeypatch):
    calls = []
    real = app_module.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    assert request(url + "/recommendations/1", bearer("nope"))[0] == 401
    assert request(url + "/recommendations/1", bearer())[0] == 200
    assert calls == [(b"nope", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_the_token_stays_out_of_reprs_and_answers():
    policy = AccessPolicy(token=TOKEN, allowed_hosts=("localhost",))
    assert TOKEN not in repr(policy) and "localhost" in repr(policy)


def test_read_token_takes_the_environment_and_refuses_what_cannot_work():
    assert read_token({}) is None
    assert read_token({ENV_TOKEN: f"  {TOKEN}\n"}) == TOKEN
    for bad in ("", "   ", "two words", "caf\u00e9-token-value-1234"):
        with pytest.raises(ConfigError) as exc:
            read_token({ENV_TOKEN: bad})
        assert ENV_TOKEN in str(exc.value)
        if bad.strip():
            assert bad.strip() not in str(exc.value)


# -- Host names -------------------------------------------------------------------------------
def test_a_host_not_allowed_gets_a_json_400_before_anything_else(url):
    for path in ("/health", "/", "/recommendations/1"):
        status, body, _ = request(url + path, {"Host": "rebound.example", **bearer()})
        assert status == 400, path
        assert body == {"detail": "Host header missing or not allowed on this server"}
    assert request(url + "/health", {"Host": "localhost:1234"})[0] == 200  # the port is not part of the name
    assert request(url + "/recommendations/1", {"Host": "LOCALHOST", **bearer()})[0] == 200


@pytest.mark.parametrize(("value", "expected"), [
    ("a.example,  b.example", ("a.example", "b.example")),
    ("*.example.com,localhost", ("*.example.com", "localhost")),
    ("::1,127.0.0.1", ("[::1]", "127.0.0.1")),
    ("*", ("*",)),
])
def test_allowed_hosts_option(value, expected):
    assert build_parser().parse_args(["serve", "--allowed-hosts", value]).allowed_hosts == expected


@pytest.mark.parametrize("value", ["example.com:8000", "http://example.com", "ex*ample.com", "a/b", " , "])
def test_bad_allowed_hosts_exit_2(value, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--allowed-hosts", value])
    assert exc.value.code == 2
    assert "--allowed-hosts" in capsys.readouterr().err


# -- the page ---------------------------------------------------------------------------------
def test_the_page_loads_without_a_token_and_asks_for_it(url, paths):
    status, html, _ = request(url + "/")
    assert status == 200
    assert 'id="token-form"' in html and "Bearer" in html
    assert 'id="ask"' in html  # the page itself is all there
    with live_server(create_app(paths, reload_interval=None)) as open_url:
        assert 'id="token-form"' not in request(open_url + "/")[1]  # no prompt where no token is needed


NODE_HARNESS = """
const storage = new Map();
globalThis.sessionStorage = {getItem: k => storage.has(k) ? storage.get(k) : null,
                             setItem: (k, v) => storage.set(k, String(v)), removeItem: k => storage.delete(k)};
const form = {hidden: true, addEventListener: (type, f) => { form.submit = f; }};
const field = {value: ""};
globalThis.document = {getElementById: id => ({"token-form": form, "token": field})[id] ?? null};
globalThis.window = globalThis;
const calls = [];
globalThis.fetch = async (resource, init = {}) => {
  calls.push([resource, new Headers(init.headers || {}).get("Authorization")]);
  return {status: resource.endsWith("/deny") ? 401 : 200};
};
eval(SCRIPT);
(async () => {
  const out = {shownAtStart: !form.hidden};
  await fetch("/recommendations/0");
  field.value = "  s3cret  ";
  form.submit({preventDefault() {}});
  out.stored = sessionStorage.getItem("rekko-token");
  out.hiddenAfterSubmit = form.hidden;
  for (const r of ["/recommendations/1?n=3", "https://elsewhere.example/x", "//elsewhere.example/x", "/deny"]) {
    await fetch(r);
  }
  out.calls = calls;
  out.storedAfter401 = sessionStorage.getItem("rekko-token");
  out.shownAfter401 = !form.hidden;
  console.log(JSON.stringify(out));
})();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_script_sends_the_token_only_to_this_server(tmp_path):
    prompt = app_module._TOKEN_PROMPT
    script = prompt[prompt.index("<script>") + len("<script>"):prompt.index("</script>")]
    harness = tmp_path / "harness.js"
    harness.write_text(f"const SCRIPT = {json.dumps(script)};\n{NODE_HARNESS}", encoding="utf-8")
    result = subprocess.run(["node", str(harness)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["shownAtStart"] and out["hiddenAfterSubmit"] and out["stored"] == "s3cret"
    assert out["calls"] == [
        ["/recommendations/0", None],  # no token yet: sent as is, the 401 explains
        ["/recommendations/1?n=3", "Bearer s3cret"],
        ["https://elsewhere.example/x", None],  # never to another origin
        ["//elsewhere.example/x", None],
        ["/deny", "Bearer s3cret"],
    ]
    assert out["storedAfter401"] is None and out["shownAfter401"]  # a refused token is forgotten, the field is back


# -- the command, end to end --------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "   ", "two words"])
def test_an_unusable_token_exits_2_without_printing_it(tmp_path, value):
    env = serve_env(**{ENV_TOKEN: value})
    result = subprocess.run([*_rekko(), "serve", "--port", "1"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert ENV_TOKEN in result.stderr and "Traceback" not in result.stderr
    if value.strip():
        assert value not in result.stderr


def _rekko() -> list[str]:
    import sys

    return [sys.executable, "-m", "rekko"]


def test_rekko_serve_with_a_token_and_two_workers(tmp_path):
    """Both workers enforce the token and the Host names; /health stays open and shows why artifacts are bad."""
    paths = build_artifacts(tmp_path / "gen")
    env = serve_env(**{ENV_TOKEN: TOKEN, "TMPDIR": str(tmp_path)})
    with serving(paths, "--workers", "2", "--allowed-hosts", "127.0.0.1", "--reload-interval", "0.2",
                 "--log-level", "debug", cwd=tmp_path, env=env) as served:
        url = served.url
        for _ in range(8):  # whichever worker answers
            assert request(url + "/recommendations/1?n=2")[0] == 401
            assert request(url + "/recommendations/1?n=2", bearer())[0] == 200
            assert request(url + "/health", {"Host": "rebound.example"})[0] == 400
        status, health, _ = request(url + "/health")
        assert status == 200 and health["status"] == "ok"

        broken = paths.manifest.with_suffix(".tmp")  # a broken generation on disk, in one rename: one reload
        broken.write_text("{ not json", encoding="utf-8")
        broken.replace(paths.manifest)

        seen: list[dict] = []

        def stale() -> bool:
            # two workers follow the publisher each at its own poll: ask until one answer shows the reason
            health = request(url + "/health")[1]
            seen.append(health)
            return health["status"] == "stale" and "manifest.json" in (health.get("reload_error") or "")

        # each reload loads in a fresh child interpreter: seconds, more on a busy machine
        assert wait_for(stale, timeout=90, interval=0.2), (seen[-3:], served.log()[-3000:])
        assert request(url + "/recommendations/1?n=2", bearer())[0] == 200  # the old generation still answers
    log = served.log()
    assert "Uvicorn running on http://127.0.0.1:" in log, log[-3000:]  # no --host given: loopback
    assert "without REKKO_SERVE_TOKEN" not in log
    assert TOKEN not in log and TOKEN[:12] not in log  # not even at --log-level debug


@pytest.mark.parametrize(("host", "allowed", "expected"), [
    ("127.0.0.1", (), ("localhost", "127.0.0.1", "[::1]")),
    ("127.0.0.2", (), ("localhost", "127.0.0.1", "[::1]", "127.0.0.2")),
    ("::1", (), ("localhost", "127.0.0.1", "[::1]")),
    ("0.0.0.0", (), ()),  # a public bind answers any name unless told (the token guards it)
    ("127.0.0.1", ("*",), ()),
    ("127.0.0.1", ("api.example",), ("api.example",)),
])
def test_default_allowed_hosts_on_loopback_guard_against_dns_rebinding(host, allowed, expected):
    from rekko.serve.cli import default_allowed_hosts

    assert default_allowed_hosts(host, allowed) == expected


def test_rekko_serve_on_loopback_refuses_a_rebound_host_name_by_default(tmp_path):
    paths = build_artifacts(tmp_path / "gen")
    with serving(paths, "--reload-interval", "0", cwd=tmp_path, env=serve_env(TMPDIR=str(tmp_path))) as served:
        assert request(served.url + "/recommendations/1?n=2", {"Host": "rebound.example"})[0] == 400
        assert request(served.url + "/recommendations/1?n=2")[0] == 200  # Host: 127.0.0.1:<port>
        assert request(served.url + "/health", {"Host": "localhost"})[0] == 200
