"""SIGHUP applies the listener and delivery settings it says it applies, to new sessions:
relay_from (a tightened list is enforced), max_message_size, max_recipients, the HELO name
([daemon] hostname) and [delivery] source_address; restart-only settings are logged as such."""
import os
import signal

from esad_harness import Daemon, SmtpClient, make_body, run_tests, send_message, wait_for
from smtp_sink import SmtpSink


def reload_daemon(d, listener_extra, tail):
    daemon_keys = tail.get("daemon", 'hostname = "esad.test"')
    rest = tail.get("rest", "")
    with open(d.config_path, "w") as f:
        f.write(f'[daemon]\nstate_dir = "{d.state}"\ncontrol_socket = "{d.socket}"\n'
                f'{daemon_keys}\n'
                f'[listener]\naddress = "127.0.0.1:{d.smtp_port}"\n{listener_extra}\n{rest}')
    before = d.read_log().count("configuration reloaded")
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: d.read_log().count("configuration reloaded") > before or
                    "configuration rejected" in d.read_log(), timeout=20), d.read_log()


def rcpt_reply(port, rcpt, sender="a@src.test"):
    c = SmtpClient(port)
    try:
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd(f"MAIL FROM:<{sender}>")
        return c.cmd(f"RCPT TO:<{rcpt}>")
    finally:
        c.close()


def test_relay_from_and_limits_apply_on_reload():
    d = Daemon()
    try:
        assert rcpt_reply(d.smtp_port, "x@dst.test")[0] == 250
        reload_daemon(d, 'relay_from = ["10.0.0.0/8"]\nmax_message_size = 2048\nmax_recipients = 1\n',
                      {})
        # 127.0.0.1 is no longer a relay client.
        code, text = rcpt_reply(d.smtp_port, "x@dst.test")
        assert code == 554 and "5.7.1" in text, text
        reload_daemon(d, 'max_message_size = 2048\nmax_recipients = 1\n', {})
        code, text = send_message(d.smtp_port, "a@src.test", ["x@dst.test"],
                                  make_body("big@t", size=8000))
        assert code == 552, (code, text)
        c = SmtpClient(d.smtp_port)
        try:
            c.reply()
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<a@src.test>")
            assert c.cmd("RCPT TO:<x@dst.test>")[0] == 250
            assert c.cmd("RCPT TO:<y@dst.test>")[0] == 452
        finally:
            c.close()
    finally:
        d.cleanup()


def test_helo_name_and_source_address_apply_on_reload():
    sink = SmtpSink()
    d = Daemon(start=False)
    routes = os.path.join(d.dir, "r.txt")
    with open(routes, "w") as f:
        f.write(f"ALL [127.0.0.1]:{sink.port}\n")
    d.write_config(f'[routes]\nfile = "{routes}"\n')
    d.start()
    try:
        assert send_message(d.smtp_port, "a@src.test", ["u@dst.test"], make_body("one@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 1, timeout=20)
        assert sink.helos[-1] == ("esad.test", "127.0.0.1")
        reload_daemon(d, "", {"daemon": 'hostname = "renamed.test"',
                              "rest": f'[routes]\nfile = "{routes}"\n'
                                      '[delivery]\nsource_address = "127.0.0.2"\n'
                                      '[dns]\nservers = ["127.0.0.1:9"]\ntimeout_ms = 200\n'})
        assert send_message(d.smtp_port, "a@src.test", ["u@dst.test"], make_body("two@t"))[0] == 250
        assert wait_for(lambda: len(sink.messages) == 2, timeout=20), d.read_log()
        assert sink.helos[-1] == ("renamed.test", "127.0.0.2"), sink.helos
        # The Received: header of newly injected mail names the new host name too.
        assert b"by renamed.test" in sink.messages[-1]["data"]
    finally:
        d.cleanup()
        sink.close()


def test_restart_only_settings_are_logged():
    d = Daemon()
    try:
        reload_daemon(d, "", {"daemon": 'hostname = "esad.test"\nshutdown_timeout = "5s"'})
        assert "daemon.shutdown_timeout changed; it takes effect after a restart" in d.read_log()
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_tests([test_relay_from_and_limits_apply_on_reload,
               test_helo_name_and_source_address_apply_on_reload,
               test_restart_only_settings_are_logged])
