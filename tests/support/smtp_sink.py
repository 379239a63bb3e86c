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


def local_listener(backlog=8):
    """A listening socket on 127.0.0.1, port 0: (socket, port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock, sock.getsockname()[1]


class StartTlsServerSide:
    """The server's side of one connection taken through STARTTLS into TLS on memory BIOs, for
    peers that misbehave at the TLS record level (a bad record, an early close_notify).

        s = StartTlsServerSide(conn, cert, key, b"peer.test", [b"8BITMIME"])
            # 220, EHLO answered with the extensions and STARTTLS, 220, the handshake
        s.line() -> one line read inside TLS (without CRLF); s.recv() reads more into s.text
        s.send(b"250 ok\\r\\n")          encrypted and sent
        s.close_notify(); s.flush()      what was written and a close_notify, one segment
    """

    def __init__(self, conn, cert, key, name, extensions=()):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.conn = conn
        f = conn.makefile("rb")  # the client waits for each reply: nothing is read ahead
        conn.sendall(b"220 %s ESMTP\r\n" % name)
        assert f.readline().upper().startswith(b"EHLO")
        conn.sendall(b"".join(b"250-%s\r\n" % e for e in (name, *extensions)) + b"250 STARTTLS\r\n")
        assert f.readline().strip().upper() == b"STARTTLS"
        conn.sendall(b"220 2.0.0 go ahead\r\n")
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.text = b""
        self._pump(self.tls.do_handshake)
        self.flush()

    def _pump(self, step):
        # step() until it needs no more input; ciphertext goes out as it comes.
        while True:
            try:
                return step()
            except ssl.SSLWantReadError:
                self.flush()
                data = self.conn.recv(65536)
                if not data:
                    raise OSError("eof")
                self.incoming.write(data)

    def flush(self):
        pending = self.outgoing.read()
        if pending:
            self.conn.sendall(pending)

    def recv(self):
        chunk = self._pump(lambda: self.tls.read(65536))
        if not chunk:
            raise OSError("tls eof")
        self.text += chunk

    def line(self):
        while b"\r\n" not in self.text:
            self.recv()
        line, self.text = self.text.split(b"\r\n", 1)
        return line

    def send(self, data, flush=True):
        self.tls.write(data)
        if flush:
            self.flush()

    def close_notify(self):
        try:
            self.tls.unwrap()  # writes close_notify, then would wait for the client's
        except ssl.SSLWantReadError:
            pass
