"""A scripted SMTP server for delivery tests (stdlib only, runs in a thread of the test).

    sink = SmtpSink(tls_cert=None, tls_key=None)   # listens on 127.0.0.1, port 0
    sink.port, sink.messages (list of dicts: mail_from, rcpts, data, tls), sink.connections

Recipient rules by local part prefix: "hard" → 550 5.1.1, "soft" → 451 4.3.0, "softonce" →
451 the first time, 250 afterwards; "dropdotonce" → the first time, the connection is
dropped after the final dot without a reply; "hangdot" → the final dot is never answered;
"datafail" → accepted at RCPT, the final dot answered 554 5.6.0; anything else 250. `sink.greeting` may be set to a
421 banner. STARTTLS is offered when a certificate is given. 8BITMIME is offered unless eight_bit=False;
SMTPUTF8 only with smtputf8=True, and a UTF-8 recipient in a transaction without the SMTPUTF8
parameter gets 553 5.6.7 (as strict receivers answer).
"""
import socket
import ssl
import threading
import time


class SmtpSink:
    def __init__(self, tls_cert=None, tls_key=None, host="127.0.0.1", port=0, eight_bit=True,
                 smtputf8=False):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        self.connections = 0
        self.helos = []  # (EHLO/HELO argument, peer address) per command seen
        self.greeting = "220 sink.test ESMTP scripted"
        self.eight_bit = eight_bit  # advertise 8BITMIME
        self.smtputf8 = smtputf8    # advertise SMTPUTF8 (otherwise UTF-8 addresses get 553 5.6.7)
        self.seen_softonce = set()
        self.lock = threading.Lock()
        self.tls_ctx = None
        if tls_cert:
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(tls_cert, tls_key)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _rcpt_reply(self, addr):
        local = addr.split("@")[0].lower()
        if local.startswith("softonce"):
            with self.lock:
                if addr not in self.seen_softonce:
                    self.seen_softonce.add(addr)
                    return "451 4.3.0 try again later"
            return "250 2.1.5 ok"
        if local.startswith("hard"):
            return "550 5.1.1 <%s>: no such user" % addr
        if local.startswith("soft"):
            return "451 4.3.0 mailbox busy"
        return "250 2.1.5 ok"

    def _session(self, conn):
        f = conn.makefile("rwb")
        tls = False

        def send(line):
            f.write((line + "\r\n").encode())
            f.flush()

        try:
            send(self.greeting)
            if self.greeting.startswith("4") or self.greeting.startswith("5"):
                f.readline()
                send("221 bye")
                return
            mail_from, rcpts, mail_params = None, [], ""
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").rstrip("\r\n")
                verb = cmd.split(" ")[0].upper()
                if verb in ("EHLO", "HELO"):
                    with self.lock:
                        self.helos.append((cmd[5:].strip(), conn.getpeername()[0]))
                    ext = ["250-sink.test", "250-PIPELINING", "250-SIZE 50000000"]
                    if self.eight_bit:
                        ext.append("250-8BITMIME")
                    if self.smtputf8:
                        ext.append("250-SMTPUTF8")
                    if self.tls_ctx and not tls:
                        ext.append("250-STARTTLS")
                    ext.append("250 ENHANCEDSTATUSCODES")
                    for e in ext:
                        f.write((e + "\r\n").encode())
                    f.flush()
                elif verb == "STARTTLS" and self.tls_ctx and not tls:
                    send("220 2.0.0 go ahead")
                    f.close()
                    conn = self.tls_ctx.wrap_socket(conn, server_side=True)
                    f = conn.makefile("rwb")
                    tls = True
                elif verb == "MAIL":
                    mail_from, rcpts = cmd[10:].split(">")[0].lstrip("<"), []
                    mail_params = cmd.split(">", 1)[1].upper() if ">" in cmd else ""
                    send("250 2.1.0 ok")
                elif verb == "RCPT":
                    addr = cmd[8:].split(">")[0].lstrip("<")
                    reply = self._rcpt_reply(addr)
                    if not addr.isascii() and "SMTPUTF8" not in mail_params:
                        reply = "553 5.6.7 UTF-8 address without SMTPUTF8"
                    if reply.startswith("250"):
                        rcpts.append(addr)
                    send(reply)
                elif verb == "DATA":
                    if not rcpts:
                        send("554 5.5.1 no valid recipients")
                        continue
                    send("354 go")
                    data = b""
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        data += l[1:] if l.startswith(b"..") else l
                    with self.lock:
                        self.messages.append({"mail_from": mail_from, "rcpts": list(rcpts),
                                              "data": data, "tls": tls, "params": mail_params})
                        drop = any(r.lower().startswith("dropdotonce") and r not in self.seen_softonce
                                   for r in rcpts)
                        for r in rcpts:
                            if r.lower().startswith("dropdotonce"):
                                self.seen_softonce.add(r)
                    if drop:
                        return  # the message arrived, the reply never does
                    if any(r.lower().startswith("hangdot") for r in rcpts):
                        while self.running:  # never answer the final dot
                            time.sleep(0.1)
                        return
                    if any(r.lower().startswith("datafail") for r in rcpts):
                        send("554 5.6.0 content rejected")
                        continue
                    send("250 2.0.0 Ok: queued as %d" % len(self.messages))
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    send("250 2.0.0 ok")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("250 2.0.0 ok")
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass
