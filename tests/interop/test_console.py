"""The web console in a real browser (Debian's chromium + chromedriver, driven by
Selenium) against a real `pond serve`: login, a query run with Ctrl+Enter, a
million-row result streamed with bounded DOM and JS heap, cancel, a chart of
line-protocol data (and its live mode), the catalog and administration pages,
a non-superuser kept out of administration and other databases, CSRF refused,
logout, phone width. Screenshots of each page go to docs/console/.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
import requests

from helpers import ADMIN, PASSWORD

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server("console")


def _browser(width=1280, height=900):
    if not Path(CHROMEDRIVER).exists() or not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.fail("chromium and chromium-driver are missing: run scripts/setup.sh (it installs them with apt-get)")
    opts = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
              "--enable-precise-memory-info", "--lang=en-US"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture
def browser():
    d = _browser()
    yield d
    d.quit()


def wait(d, timeout=30):
    return WebDriverWait(d, timeout, poll_frequency=0.1)


def login(d, server, user=ADMIN, password=PASSWORD):
    d.get(f"{server.http_url}/console/login")
    d.find_element(By.ID, "user").send_keys(user)
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "login").click()
    wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#editor .cm-content")))
    # The catalog (database list) has arrived.
    wait(d).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#database option"))


def set_sql(d, text):
    d.execute_script(
        "const v = document.getElementById('editor').editorView;"
        "v.dispatch({changes: {from: 0, to: v.state.doc.length, insert: arguments[0]}});", text)


def status(d):
    return d.find_element(By.ID, "status").text


def wait_status(d, needle, timeout=60):
    wait(d, timeout).until(lambda d: needle in status(d) or not d.find_element(By.ID, "error").get_attribute("hidden"))
    assert needle in status(d), f"status {status(d)!r}, error {d.find_element(By.ID, 'error').text!r}"


def run_with_keyboard(d):
    editor = d.find_element(By.CSS_SELECTOR, "#editor .cm-content")
    editor.click()
    editor.send_keys(Keys.CONTROL, Keys.ENTER)


def heap_bytes(d) -> int:
    """The page's JS heap in use plus the ArrayBuffer backing stores outside it (Arrow's data)."""
    d.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    u = d.execute_cdp_cmd("Runtime.getHeapUsage", {})
    return int(u["usedSize"]) + int(u.get("backingStorageSize", 0)) + int(u.get("embedderHeapUsedSize", 0))


def cpu_seconds(server) -> float:
    """CPU time (user + system) the pond process has used so far."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_admin(server, sql, database=None):
    body = {"sql": sql}
    if database:
        body["database"] = database
    r = requests.post(f"{server.http_url}/api/v1/query", json=body, auth=(ADMIN, PASSWORD), timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_login_query_with_keyboard_and_error_position(server, browser, tmp_path):
    d = browser
    d.get(f"{server.http_url}/console/")
    assert d.current_url.endswith("/console/login"), "pages need a login"
    d.find_element(By.ID, "user").send_keys(ADMIN)
    d.find_element(By.ID, "password").send_keys("wrong")
    d.find_element(By.ID, "login").click()
    error = wait(d).until(lambda d: d.find_elements(By.ID, "login-error"))[0]
    assert "Wrong user name or password" in error.text
    SHOTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(SHOTS / "login.png"))
    login(d, server)
    set_sql(d, "SELECT 40 + 2 AS answer, 'pond' AS name, TIMESTAMP '2026-01-02 03:04:05' AS at;\nSELECT 7 AS second")
    d.execute_script("const v = document.getElementById('editor').editorView; v.dispatch({selection: {anchor: 3}})")
    run_with_keyboard(d)
    wait_status(d, "1 row in")
    cells = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#grid-panel [role=gridcell]")]
    assert cells == ["42", "pond", "2026-01-02 03:04:05.000"], cells
    headers = d.find_element(By.CSS_SELECTOR, "#grid-panel .grid-head").text
    assert "answer" in headers and "Int32" in headers and "Timestamp" in headers, headers
    # The history keeps it (per user).
    assert "SELECT 40 + 2" in d.find_element(By.ID, "history").text
    d.save_screenshot(str(SHOTS / "query.png"))
    # Downloads: CSV and Arrow from the API, Parquet from the console's export.
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    for fmt, magic in [("csv", b"answer,name,at"), ("arrow", b"\xff\xff\xff\xff"), ("parquet", b"PAR1")]:
        d.find_element(By.ID, f"download-{fmt}").click()
        wait(d).until(lambda d: (tmp_path / f"result.{fmt}").exists() and (tmp_path / f"result.{fmt}").stat().st_size > 0)
        data = (tmp_path / f"result.{fmt}").read_bytes()
        assert data.startswith(magic), (fmt, data[:40])
        if fmt == "parquet":
            assert data.endswith(b"PAR1")
    # An error names its position and selects it in the editor.
    set_sql(d, "SELECT 1,\n  2 FROMM nowhere")
    d.find_element(By.ID, "run").click()
    err = wait(d).until(lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").is_displayed() else None)
    assert "line 2" in err.text, err.text
    selected = d.execute_script("const v = document.getElementById('editor').editorView; const s = v.state.selection.main; return v.state.sliceDoc(s.from, s.to)")
    assert selected in ("nowhere", "FROMM"), selected


def test_million_rows_stream_with_bounded_dom_and_heap(server, browser):
    d = browser
    login(d, server)
    before = heap_bytes(d)
    set_sql(d, "SELECT range AS i, range * 2 AS twice, 'row-' || range AS label FROM range(1000000)")
    started = time.monotonic()
    d.find_element(By.ID, "run").click()
    # Rows show up before the stream ends.
    wait(d, 120).until(lambda d: "rows so far" in status(d) or "1,000,000 rows in" in status(d))
    wait_status(d, "1,000,000 rows in", timeout=180)
    elapsed = time.monotonic() - started
    dom_rows = len(d.find_elements(By.CSS_SELECTOR, "#grid-panel .grid-body [role=row]"))
    assert 0 < dom_rows < 200, f"{dom_rows} rows in the DOM"
    after = heap_bytes(d)
    print(f"\n1M rows streamed in {elapsed:.1f} s; JS heap {before/1e6:.0f} MB -> {after/1e6:.0f} MB; {dom_rows} rows in the DOM")
    assert after < 350e6, f"JS heap {after/1e6:.0f} MB after 1M rows"
    # The last row is reachable by scrolling.
    d.execute_script("const v = document.querySelector('.grid-viewport'); v.scrollTop = v.scrollHeight;")
    wait(d).until(lambda d: "999999" in d.find_element(By.CSS_SELECTOR, "#grid-panel .grid-body").text)
    assert "row-999999" in d.find_element(By.CSS_SELECTOR, "#grid-panel .grid-body").text
    assert d.find_element(By.CSS_SELECTOR, ".grid-viewport").get_attribute("aria-rowcount") == "1000001"


def test_cancel_stops_a_running_query(server, browser):
    d = browser
    login(d, server)
    # A cross product of 10^16 rows: it would keep DuckDB busy for days.
    set_sql(d, "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range < 0")
    d.find_element(By.ID, "run").click()
    wait(d).until(lambda d: d.find_element(By.ID, "cancel").is_enabled())

    def busy() -> float:
        before = cpu_seconds(server)
        time.sleep(2)
        return cpu_seconds(server) - before

    running = busy()
    assert running > 0.9, f"the query should keep pond busy (used {running:.1f} CPU seconds in 2 s)"
    assert "Running" in status(d)
    d.find_element(By.ID, "cancel").click()
    wait_status(d, "Cancelled", timeout=10)
    assert d.find_element(By.ID, "run").is_enabled()
    # The server stopped working on it (the dropped response interrupts DuckDB).
    deadline = time.monotonic() + 20
    used = busy()
    while used > 0.6 and time.monotonic() < deadline:
        used = busy()
    assert used <= 0.6, f"pond still used {used:.1f} CPU seconds in 2 s after the cancel"
    # The server is still there for the next query.
    set_sql(d, "SELECT 'after cancel' AS s")
    d.find_element(By.ID, "run").click()
    wait_status(d, "1 row in")


def test_chart_from_line_protocol_and_live_mode(server, browser):
    db = f"ts_{uuid.uuid4().hex[:6]}"
    http_admin(server, f"CREATE DATABASE {db}")
    now = int(time.time())

    def write(start, n):
        lines = [f"cpu,host={h} usage={(i * 7 + k * 13) % 100}.5 {now - 600 + i}" for i in range(start, start + n) for k, h in enumerate(["alpha", "beta"])]
        r = requests.post(f"{server.http_url}/api/v3/write_lp", params={"db": db, "precision": "second"}, data="\n".join(lines),
                          auth=(ADMIN, PASSWORD), timeout=30)
        assert r.status_code in (200, 204), r.text

    write(0, 120)
    d = browser
    login(d, server)
    d.find_element(By.CSS_SELECTOR, f"#database option[value='{db}']").click()
    set_sql(d, "SELECT time, host, usage FROM cpu ORDER BY time")
    d.find_element(By.ID, "run").click()
    wait_status(d, "240 rows in")
    d.find_element(By.ID, "tab-chart").click()
    wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#chart canvas")))
    legend = d.find_element(By.CSS_SELECTOR, "#chart .u-legend").text
    assert "alpha usage" in legend and "beta usage" in legend, legend
    label = d.find_element(By.ID, "chart").get_attribute("aria-label")
    assert "2 series" in label and "120 points" in label, label
    # Pixels were drawn (not a blank canvas).
    painted = d.execute_script(
        "const c = document.querySelector('#chart canvas'); const g = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < g.length; i += 4) if (g[i] > 0) n++; return n;")
    assert painted > 500, painted
    d.save_screenshot(str(SHOTS / "chart.png"))
    # Live mode re-runs the query and picks up new points.
    every = d.find_element(By.ID, "live-every")
    every.clear()
    every.send_keys("1")
    d.find_element(By.ID, "live").click()
    write(120, 30)
    wait(d, 30).until(lambda d: "150 points" in d.find_element(By.ID, "chart").get_attribute("aria-label"))
    d.find_element(By.ID, "live").click()


def test_catalog_and_admin_pages(server, browser):
    http_admin(server, "CREATE DATABASE IF NOT EXISTS shop")
    http_admin(server, "CREATE TABLE IF NOT EXISTS shop.main.orders (id INTEGER, amount DECIMAL(10,2), placed TIMESTAMP)")
    r = requests.post(f"{server.http_url}/api/v3/write_lp", params={"db": "shop", "precision": "second"},
                      data="visits,page=home n=3i 1700000000\nvisits,page=cart n=1i 1700000060\n", auth=(ADMIN, PASSWORD), timeout=30)
    assert r.status_code in (200, 204), r.text
    d = browser
    login(d, server)
    d.find_element(By.LINK_TEXT, "Catalog").click()
    wait(d).until(lambda d: "databases." in status(d))
    text = d.find_element(By.ID, "databases").text
    assert "database shop" in text, text
    # Measurements with their row counts.
    wait(d).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#measurements table"))
    rows = [r.text for r in d.find_elements(By.CSS_SELECTOR, "#measurements tbody tr")]
    assert any(r.startswith("shop visits 2 ") for r in rows), rows
    # Tables open to their columns.
    d.find_element(By.XPATH, "//summary[text()='database shop']").click()
    d.find_element(By.XPATH, "//summary[starts-with(text(), 'orders')]").click()
    assert "DECIMAL(10,2)" in d.find_element(By.ID, "databases").text
    d.save_screenshot(str(SHOTS / "catalog.png"))
    d.find_element(By.LINK_TEXT, "Administration").click()
    wait(d).until(lambda d: "admin" in d.find_element(By.ID, "users").text)
    d.find_element(By.ID, "token-name").send_keys("console-test")
    d.find_element(By.CSS_SELECTOR, "#new-token button[type=submit]").click()
    secret = wait(d).until(lambda d: d.find_element(By.ID, "token-value").text if d.find_elements(By.ID, "token-value") else None)
    assert secret.startswith("pond_") or len(secret) > 20, secret
    # The secret works as a credential, and the listing never shows it.
    r = requests.get(f"{server.http_url}/api/v1/auth/verify", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert r.status_code == 200 and r.json()["user"] == ADMIN
    wait(d).until(lambda d: "console-test" in d.find_element(By.ID, "tokens").text)
    assert secret not in d.find_element(By.CSS_SELECTOR, "#tokens table").text
    wait(d).until(lambda d: "pond_" in d.find_element(By.ID, "metrics").text)
    d.set_window_size(1280, 2400)
    d.save_screenshot(str(SHOTS / "admin.png"))


def test_non_superuser_cannot_reach_admin_or_other_databases(server, browser):
    name = f"viewer_{uuid.uuid4().hex[:6]}"
    http_admin(server, "CREATE DATABASE IF NOT EXISTS shop")
    http_admin(server, "CREATE DATABASE IF NOT EXISTS vault")
    http_admin(server, "CREATE TABLE IF NOT EXISTS vault.main.keys (k VARCHAR)")
    http_admin(server, f"CREATE USER {name} PASSWORD 'viewer-pass-1'")
    http_admin(server, "CREATE TABLE IF NOT EXISTS shop.main.orders (id INTEGER, amount DECIMAL(10,2), placed TIMESTAMP)")
    http_admin(server, f"GRANT READ ON DATABASE shop TO {name}")
    d = browser
    login(d, server, name, "viewer-pass-1")
    assert not d.find_elements(By.LINK_TEXT, "Administration")
    options = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#database option")]
    assert "shop" in options and "vault" not in options, options
    # Completion offers what the user may see, and nothing else.
    def completions(typed):
        set_sql(d, "SELECT * FROM ")
        d.execute_script("const v = document.getElementById('editor').editorView; v.dispatch({selection: {anchor: v.state.doc.length}})")
        editor = d.find_element(By.CSS_SELECTOR, "#editor .cm-content")
        editor.send_keys(typed)
        try:
            box = wait(d, 5).until(lambda d: d.find_element(By.CSS_SELECTOR, ".cm-tooltip-autocomplete"))
            return box.text.split("\n")
        except Exception:
            return []
        finally:
            editor.send_keys(Keys.ESCAPE)

    assert any(c.startswith("shop") for c in completions("sho")), completions("sho")
    assert not any(c.startswith("vault") for c in completions("vau"))
    assert any(c.startswith("orders") for c in completions("shop.main.or"))
    set_sql(d, "SELECT * FROM vault.main.keys")
    d.find_element(By.ID, "run").click()
    err = wait(d).until(lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").is_displayed() else None)
    assert "denied" in err.text.lower() or "permission" in err.text.lower(), err.text
    d.get(f"{server.http_url}/console/admin")
    assert "Administration is for superusers" in d.find_element(By.TAG_NAME, "body").text
    d.save_screenshot(str(SHOTS / "not-allowed.png"))
    # The admin API refuses the session too.
    code = d.execute_async_script("fetch('/api/v1/users').then(r => arguments[0](r.status))")
    assert code == 403


def test_csrf_rejected_and_logout(server, browser):
    d = browser
    login(d, server)
    d.get(f"{server.http_url}/console/")
    wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#editor .cm-content")))
    # The session cookie alone does not authorise a state change.
    code = d.execute_async_script(
        "fetch('/api/v1/query', {method: 'POST', headers: {'content-type': 'application/json'},"
        " body: JSON.stringify({sql: 'CREATE TABLE csrf_probe (i INT)'})}).then(r => arguments[0](r.status))")
    assert code == 403
    # The cookie is not readable from scripts.
    assert "pond_console" not in d.execute_script("return document.cookie")
    d.find_element(By.ID, "logout").click()
    wait(d).until(EC.presence_of_element_located((By.ID, "login")))
    d.get(f"{server.http_url}/console/")
    assert d.current_url.endswith("/console/login")
    code = d.execute_async_script("const done = arguments[0]; fetch('/api/v1/auth/verify', {headers: {'x-pond-console': '1'}}).then(r => done(r.status), e => done(String(e)))")
    assert code == 401, code


def test_phone_width(server):
    d = _browser(500, 900)
    try:
        # A phone's viewport (Chrome's windows are at least 500 px wide).
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        login(d, server)
        set_sql(d, "SELECT range AS n, 'item ' || range AS label FROM range(50)")
        d.find_element(By.ID, "run").click()
        wait_status(d, "50 rows in")
        assert d.execute_script("return window.innerWidth") == 390
        overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"page is {overflow}px wider than a phone"
        d.save_screenshot(str(SHOTS / "query-phone.png"))
    finally:
        d.quit()


def test_oauth2_authorization_code_with_pkce_and_refresh(server, browser):
    """A third-party app (authlib's OAuth2 client) gets a token for a user who logs in
    to the console and allows it; the token carries that user's rights narrowed to the
    client's databases; refresh tokens rotate."""
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session

    name = f"oauth_{uuid.uuid4().hex[:6]}"
    http_admin(server, "CREATE DATABASE IF NOT EXISTS shop")
    http_admin(server, "CREATE TABLE IF NOT EXISTS shop.main.orders (id INTEGER, amount DECIMAL(10,2), placed TIMESTAMP)")
    http_admin(server, "CREATE DATABASE IF NOT EXISTS vault")
    http_admin(server, "CREATE TABLE IF NOT EXISTS vault.main.keys (k VARCHAR)")
    http_admin(server, f"CREATE USER {name} PASSWORD 'oauth-pass-1'")
    http_admin(server, f"GRANT READ ON DATABASE shop TO {name}")
    http_admin(server, f"GRANT READ ON DATABASE vault TO {name}")
    r = requests.post(f"{server.http_url}/api/v1/auth/oauth2/clients", json={"user": ADMIN, "databases": ["shop"], "permission": "read"},
                      auth=(ADMIN, PASSWORD), timeout=30)
    assert r.status_code == 201, r.text
    client_id, client_secret = r.json()["client_id"], r.json()["client_secret"]
    redirect_uri = "http://127.0.0.1:9/callback"
    token_url = f"{server.http_url}/console/oauth2/token"
    app = OAuth2Session(client_id, client_secret, redirect_uri=redirect_uri, code_challenge_method="S256",
                        token_endpoint_auth_method="client_secret_basic")
    verifier = generate_token(64)
    url, state = app.create_authorization_url(f"{server.http_url}/console/oauth2/authorize", code_verifier=verifier)

    d = browser
    d.get(url)  # not logged in: the login page first, then the consent page
    d.find_element(By.ID, "user").send_keys(name)
    d.find_element(By.ID, "password").send_keys("oauth-pass-1")
    d.find_element(By.ID, "login").click()
    wait(d).until(EC.presence_of_element_located((By.ID, "allow")))
    text = d.find_element(By.TAG_NAME, "main").text
    assert client_id in text and name in text and "shop" in text, text
    d.save_screenshot(str(SHOTS / "oauth-consent.png"))
    d.find_element(By.ID, "allow").click()
    wait(d).until(lambda d: d.current_url.startswith(redirect_uri))
    callback = d.current_url
    assert f"state={state}" in callback

    token = app.fetch_token(token_url, authorization_response=callback, code_verifier=verifier)
    assert token["token_type"].lower() == "bearer" and token["refresh_token"]

    def run(access, sql):
        return requests.post(f"{server.http_url}/api/v1/query", json={"sql": sql}, timeout=30,
                             headers={"Authorization": f"Bearer {access}"})

    r = run(token["access_token"], "SELECT count(*) AS n FROM shop.main.orders")
    assert r.status_code == 200, r.text
    who = requests.get(f"{server.http_url}/api/v1/auth/verify", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=30).json()
    assert who["user"] == name and who["credential"] == "oauth2" and who["token_id"] == client_id, who
    # Narrowed to the client's databases: the user may read vault, the app may not.
    as_user = requests.post(f"{server.http_url}/api/v1/query", json={"sql": "SELECT count(*) FROM vault.main.keys"}, auth=(name, "oauth-pass-1"), timeout=30)
    assert as_user.status_code == 200, as_user.text
    denied = run(token["access_token"], "SELECT count(*) FROM vault.main.keys")
    assert denied.status_code == 403, denied.text
    # The code is single use.
    again = requests.post(token_url, auth=(client_id, client_secret), timeout=30, data={
        "grant_type": "authorization_code", "code": dict(p.split("=", 1) for p in callback.split("?", 1)[1].split("&"))["code"],
        "redirect_uri": redirect_uri, "code_verifier": verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # Refresh: a new access token and a new refresh token; the old refresh token is spent.
    old_refresh = token["refresh_token"]
    fresh = app.refresh_token(token_url, refresh_token=old_refresh)
    assert fresh["access_token"] != token["access_token"] and fresh["refresh_token"] != old_refresh
    assert run(fresh["access_token"], "SELECT 1").status_code == 200
    spent = requests.post(token_url, auth=(client_id, client_secret), data={"grant_type": "refresh_token", "refresh_token": old_refresh}, timeout=30)
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"

    # PKCE: a code redeemed with the wrong verifier is refused.
    url, state = app.create_authorization_url(f"{server.http_url}/console/oauth2/authorize", code_verifier=verifier)
    d.get(url)
    wait(d).until(EC.presence_of_element_located((By.ID, "allow"))).click()
    wait(d).until(lambda d: d.current_url.startswith(redirect_uri))
    code = dict(p.split("=", 1) for p in d.current_url.split("?", 1)[1].split("&"))["code"]
    bad = requests.post(token_url, auth=(client_id, client_secret), timeout=30, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": generate_token(64)})
    assert bad.status_code == 400 and "code_verifier" in bad.json()["error_description"]
    # Deny sends the app an error, no code.
    url, state = app.create_authorization_url(f"{server.http_url}/console/oauth2/authorize", code_verifier=verifier)
    d.get(url)
    wait(d).until(EC.presence_of_element_located((By.ID, "deny"))).click()
    wait(d).until(lambda d: d.current_url.startswith(redirect_uri))
    assert "error=access_denied" in d.current_url and "code=" not in d.current_url
    # A redirect to anywhere but loopback is never made.
    d.get(f"{server.http_url}/console/oauth2/authorize?response_type=code&client_id={client_id}"
          f"&redirect_uri=https://evil.example/cb&code_challenge={'a' * 43}&code_challenge_method=S256")
    assert "loopback" in d.find_element(By.TAG_NAME, "body").text
