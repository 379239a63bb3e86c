"""esad-web, the Delivery Status page (docs/web.md), against the real esad.

The HTTP API with a real HTTP client (urllib and curl): the destination list with a dead
host marked down, hoststatus, the chart's history, and POST /api/delivernow refused without
the operator token, without the CSRF token, from another origin, with a form content type.
Then the page itself in headless Chromium (Debian's chromium and chromedriver, driven with
python3-selenium): the dead host is listed as down, the chart draws, sorting and filtering
work, "Retry All Delivery" without the token is refused and the mail stays queued; with the
token (once the destination is back) it delivers the held mail and the table shows it. A
screenshot goes to the test's output directory ($TEST_OUTPUT_DIR/web)."""
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

from esad_harness import make_body, send_message, wait_for, run_tests, free_port
from smtp_sink import SmtpSink
from test_delivery import delivery_daemon, mail_log

ESAD_WEB = os.environ.get("ESAD_WEB_BIN", "build/test/esad-web")
TOKEN = "op-token-5f1c2e9a77"
OUTPUT = os.path.join(os.environ.get("TEST_OUTPUT_DIR", os.path.join(os.getcwd(), "test-output")), "web")


class Web:
    def __init__(self, d, token_mode=0o600, extra_args=()):
        self.port = free_port()
        self.token_file = os.path.join(d.dir, "web.token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(self.token_file, token_mode)
        with open(d.config_path, "a") as f:
            f.write(f'\n[web]\naddress = "127.0.0.1:{self.port}"\ntoken_file = "{self.token_file}"\n')
        self.log_path = os.path.join(d.dir, "esad-web.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([ESAD_WEB, "--config", d.config_path, "--sample-interval", "1",
                                      *extra_args], stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self):
        def up():
            assert self.proc.poll() is None, open(self.log_path).read()
            try:
                return self.get("/api/session")[0] == 200
            except OSError:
                return False
        assert wait_for(up, timeout=15), open(self.log_path).read()

    def request(self, path, method="GET", body=None, headers=None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get(self, path):
        status, body, headers = self.request(path)
        ctype = headers.get("Content-Type", "")
        return status, json.loads(body) if ctype.startswith("application/json") else body, headers

    def post(self, target, token=None, csrf=None, ctype="application/json", origin=None, raw=None):
        headers = {"Content-Type": ctype}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        if origin is not None:
            headers["Origin"] = origin
        body = raw if raw is not None else json.dumps({"target": target}).encode()
        status, data, _ = self.request("/api/delivernow", "POST", body, headers)
        return status, json.loads(data)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            assert self.proc.wait(10) == 0
        self.log.close()


def queue_with_dead_host(dead_port, live_port):
    d = delivery_daemon(f"dead.test [127.0.0.1]:{dead_port}\nlive.test [127.0.0.1]:{live_port}\n")
    for i in range(3):
        assert send_message(d.smtp_port, "ops@src.test", [f"held{i}@dead.test"], make_body(f"held-{i}@t"))[0] == 250
    assert send_message(d.smtp_port, "ops@src.test", ["ok@live.test"], make_body("live@t"))[0] == 250
    assert wait_for(lambda: d.ctl_json("hoststatus", "dead.test")["status"] == "down", timeout=15), mail_log(d)
    return d


def test_http_api():
    live = SmtpSink()
    dead_port = free_port()
    d = queue_with_dead_host(dead_port, live.port)
    web = None
    try:
        assert wait_for(lambda: len(live.messages) == 1, timeout=15)
        web = Web(d)
        web.wait_ready()
        status, hosts, _ = web.get("/api/hosts")
        assert status == 200
        rows = {h["host"]: h for h in hosts["hosts"]}
        assert rows["dead.test"]["down"] is True and rows["dead.test"]["status"] == "down"
        assert rows["dead.test"]["active_recipients"] == 3
        assert rows["live.test"]["status"] == "up" and rows["live.test"]["delivered_recipients"] == 1
        assert rows["live.test"]["last_activity"] > 0
        status, hs, _ = web.get("/api/hoststatus?host=dead.test")
        assert status == 200 and hs["status"] == "down" and hs["gauges"]["active_recipients"] == 3
        assert any("refused" in (ip["last_error"] or "").lower() for ip in hs["ips"]), hs
        assert web.get("/api/hoststatus?host=nowhere.test")[0] == 404
        assert web.get("/api/hoststatus")[0] == 400
        assert web.get("/nothing")[0] == 404
        assert wait_for(lambda: len(web.get("/api/history")[1]["points"]) >= 2, timeout=10)
        point = web.get("/api/history")[1]["points"][-1]
        assert point["active"] == 3 and "delivered_per_min" in point

        status, page, headers = web.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"Retry All Delivery" in page and b'src="/app.js"' in page
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert b"http://" not in page.replace(b"http://www.w3.org", b"")  # nothing from elsewhere
        js = web.get("/app.js")[1]
        assert b"fetch('/api/delivernow'" in js and b"https://" not in js

        session = web.get("/api/session")[1]
        csrf = session["csrf"]
        assert session["actions_enabled"] is True and len(csrf) == 64
        # Refusals: each leaves the queue as it was.
        assert web.post("all")[0] == 401
        assert web.post("all", token="wrong-token-xyz", csrf=csrf)[0] == 401
        assert web.post("all", token=TOKEN)[0] == 403
        assert web.post("all", token=TOKEN, csrf="0" * 64)[0] == 403
        assert web.post("all", token=TOKEN, csrf=csrf, origin="http://evil.example")[0] == 403
        assert web.post("all", token=TOKEN, csrf=csrf, ctype="application/x-www-form-urlencoded")[0] == 415
        assert web.post("all", token=TOKEN, csrf=csrf, raw=b"{}")[0] == 400
        assert web.post("all", token=TOKEN, csrf=csrf, raw=b"x" * 10000)[0] == 413
        assert web.post("nowhere.test", token=TOKEN, csrf=csrf)[0] == 404
        assert d.ctl_json("hoststatus", "dead.test")["gauges"]["active_recipients"] == 3

        # The real thing, from curl: the destination is back and one Retry delivers.
        sink = SmtpSink(port=dead_port)
        try:
            r = subprocess.run(["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json",
                                "-H", f"Authorization: Bearer {TOKEN}", "-H", f"X-CSRF-Token: {csrf}",
                                "-H", f"Origin: {web.base}", "--data", '{"target":"dead.test"}',
                                web.base + "/api/delivernow"], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r
            # Counts the recipients that were waiting for a retry time (the others were
            # already due, held by the host's down state); all three go now.
            reply = json.loads(r.stdout)
            assert reply["target"] == "dead.test" and reply["recipients"] >= 1, reply
            assert wait_for(lambda: len(sink.messages) == 3, timeout=15), mail_log(d)
        finally:
            sink.close()
    finally:
        if web:
            web.stop()
        d.cleanup()
        live.close()


def test_token_file_rules():
    d = delivery_daemon("")
    try:
        base_config = open(d.config_path).read()
        web = Web(d, token_mode=0o644)
        assert web.proc.wait(10) == 2
        web.log.close()
        assert "readable by everyone; chmod o-r it" in open(web.log_path).read()
        # No token file: the page is read-only and Retry is refused with the reason.
        ro_config = os.path.join(d.dir, "readonly.toml")
        port = free_port()
        with open(ro_config, "w") as f:
            f.write(base_config + f'\n[web]\naddress = "127.0.0.1:{port}"\n')
        proc = subprocess.Popen([ESAD_WEB, "--config", ro_config], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"

            def session():
                try:
                    with urllib.request.urlopen(base + "/api/session", timeout=5) as r:
                        return json.loads(r.read())
                except OSError:
                    return None
            assert wait_for(lambda: session() is not None, timeout=15)
            s = session()
            assert s["actions_enabled"] is False
            req = urllib.request.Request(base + "/api/delivernow", data=b'{"target":"all"}', method="POST",
                                         headers={"Content-Type": "application/json", "X-CSRF-Token": s["csrf"],
                                                  "Authorization": "Bearer whatever-token"})
            try:
                urllib.request.urlopen(req, timeout=5)
                assert False, "accepted"
            except urllib.error.HTTPError as e:
                assert e.code == 403 and b"no [web] token_file" in e.read()
        finally:
            proc.terminate()
            assert proc.wait(10) == 0
        bad = subprocess.run([ESAD_WEB, "--address", "nonsense"], capture_output=True, text=True, timeout=10)
        assert bad.returncode == 2 and "bad address" in bad.stderr
    finally:
        d.cleanup()


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    profile = os.path.join(OUTPUT, "profile")
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def test_page_in_headless_chromium():
    from selenium.webdriver.common.by import By
    os.makedirs(OUTPUT, exist_ok=True)
    subprocess.run(["rm", "-rf", os.path.join(OUTPUT, "profile")])
    live = SmtpSink()
    dead_port = free_port()
    d = queue_with_dead_host(dead_port, live.port)
    web = None
    driver = None
    sink = None
    try:
        web = Web(d)
        web.wait_ready()
        assert wait_for(lambda: len(web.get("/api/history")[1]["points"]) >= 8, timeout=20)
        driver = chrome()
        driver.get(web.base + "/")

        # The table is re-rendered on every refresh: read it in one script call each time.
        def table():
            return driver.execute_script("""
                const out = [];
                for (const tr of document.querySelectorAll('#hosts tbody tr')) {
                  const cells = {};
                  for (const td of tr.children) cells[td.className.split(' ')[0]] = td.textContent;
                  out.push({host: tr.dataset.host, down: tr.classList.contains('down'), cells: cells});
                }
                return out;""")

        def row(host):
            return next((r for r in table() if r["host"] == host), None)

        def cells(host):
            r = row(host)
            return r["cells"] if r else {}

        def click(selector):
            """Clicks, finding the element again if a refresh replaced it meanwhile."""
            from selenium.common.exceptions import StaleElementReferenceException
            for _ in range(5):
                try:
                    driver.find_element(By.CSS_SELECTOR, selector).click()
                    return
                except StaleElementReferenceException:
                    continue
            raise AssertionError("element kept changing: " + selector)

        assert wait_for(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1",
                        timeout=20)
        assert wait_for(lambda: row("dead.test") is not None, timeout=10)
        dead = cells("dead.test")
        assert dead["status"] == "down *" and dead["active"] == "3", dead
        assert row("dead.test")["down"] is True
        assert cells("live.test")["status"] == "up" and cells("live.test")["delivered"] == "1"
        assert row("the.encryption.queue") is not None
        # The chart: both lines drawn from the sampled points.
        chart = driver.find_element(By.ID, "chart")
        assert int(chart.get_attribute("data-points")) >= 3
        pts = driver.find_element(By.ID, "line-active").get_attribute("points").split()
        assert len(pts) >= 3 and all("," in p for p in pts), pts
        xs = [float(p.split(",")[0]) for p in pts]
        assert max(xs) - min(xs) > 100, pts  # spread over the axis, not a sliver
        assert driver.find_element(By.ID, "line-rate").get_attribute("points")
        assert chart.size["width"] > 300 and chart.size["height"] > 100

        # Sort by destination (ascending), then filter.
        click('th[data-key="host"]')
        names = [r["host"] for r in table()]
        assert names == sorted(names), names
        driver.find_element(By.ID, "filter").send_keys("dead")
        assert [r["host"] for r in table()] == ["dead.test"]

        # Host status view.
        click('a.host-link[data-host="dead.test"]')
        assert wait_for(lambda: "Host up/down" in driver.find_element(By.ID, "detail-body").text, timeout=10)
        detail = driver.find_element(By.ID, "detail-body").text
        assert "down" in detail and "127.0.0.1" in detail, detail

        # Retry All Delivery without credentials: refused, the mail stays held.
        driver.find_element(By.ID, "retry-all").click()
        msg = driver.find_element(By.ID, "message")
        assert wait_for(lambda: "Refused" in msg.text, timeout=10)
        assert "authentication required" in msg.text and msg.get_attribute("class") == "error"
        assert d.ctl_json("hoststatus", "dead.test")["gauges"]["active_recipients"] == 3

        # The destination comes back; with the token, Retry All delivers the held mail.
        sink = SmtpSink(port=dead_port)
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "signin").click()
        driver.find_element(By.ID, "retry-all").click()
        assert wait_for(lambda: re.search(r"Retry All Delivery: \d+ recipients scheduled", msg.text),
                        timeout=10), msg.text
        assert wait_for(lambda: len(sink.messages) == 3, timeout=15), mail_log(d)
        assert wait_for(lambda: cells("dead.test").get("delivered") == "3" and
                        cells("dead.test").get("status") == "up" and cells("dead.test").get("active") == "0",
                        timeout=20), cells("dead.test")
        # The open host status view follows the refresh.
        assert wait_for(lambda: "Host up/down\nup" in driver.find_element(By.ID, "detail-body").text or
                        "Host up/down up" in driver.find_element(By.ID, "detail-body").text, timeout=15), \
            driver.find_element(By.ID, "detail-body").text
        driver.find_element(By.ID, "filter").clear()
        driver.find_element(By.ID, "filter").send_keys(" ")
        assert wait_for(lambda: row("live.test") is not None, timeout=10)
        shot = os.path.join(OUTPUT, "delivery_status.png")
        assert driver.save_screenshot(shot) and os.path.getsize(shot) > 10000
        print(f"screenshot: {shot}")
    finally:
        if driver:
            driver.quit()
        if web:
            web.stop()
        d.cleanup()
        live.close()
        if sink:
            sink.close()


if __name__ == "__main__":
    run_tests([test_http_api, test_token_file_rules, test_page_in_headless_chromium])
