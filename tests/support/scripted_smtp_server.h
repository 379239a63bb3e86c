// A scripted SMTP server for loop-tier tests, on 127.0.0.1 port 0 on the test's loop: any
// number of connections; connection i may close at a chosen stage instead of answering
// (close_at[i]); RCPT replies can be scripted per address (consumed one per attempt, then
// 250), STARTTLS can be broken. Counts final dots and the ones answered 250.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/loop/handle.h"
#include "daemon/loop/tcp_connect.h"
#include "tests/support/loopback_listener.h"

namespace esad::test {

// Any number of connections. close_at[i] scripts connection i (later ones behave);
// rcpt_replies: reply lines per RCPT address, consumed one per attempt (then 250).
struct ScriptedSmtpServer {
    // Where the server stops on a connection: it closes instead of answering.
    enum class Stage { kNone, kBanner, kEhlo, kMail, kRcpt, kData, kContent, kDot };
    static const char* name(Stage s) {
        static const char* const kNames[] = {
            "nowhere", "banner", "EHLO",        "MAIL",
            "RCPT",    "DATA",   "mid-content", "after the final dot"};
        return kNames[static_cast<int>(s)];
    }

    uv_loop_t* loop;
    loop::HandlePtr<loop::Tcp> listener;
    std::vector<loop::HandlePtr<loop::Tcp>> conns;
    uint16_t port = 0;
    std::vector<Stage> close_at;
    std::map<std::string, std::vector<std::string>> rcpt_replies;
    // STARTTLS offered; answered 220 and then plain bytes instead of a handshake, and the
    // listener closed (the plaintext retry is refused).
    bool broken_starttls = false;
    int accepted = 0;
    int closed_by_script = 0;
    int dots = 0;                                     // final dots received
    int delivered = 0;                                // final dots answered 250
    std::vector<std::string> rcpts;                   // RCPT addresses in order
    std::function<void(const std::string&)> on_rcpt;  // after the reply was written

    explicit ScriptedSmtpServer(uv_loop_t* l) : loop(l) {
        listener = test::listen_loopback(loop, &port, [this](int status) {
            if (status == 0) accept();
        });
    }

    void drop(loop::Tcp* c) {
        ++closed_by_script;
        c->read_stop();
        for (auto& h : conns)
            if (h.get() == c) h.reset();
    }

    void accept() {
        const Stage stop = accepted < static_cast<int>(close_at.size())
                               ? close_at[static_cast<size_t>(accepted)]
                               : Stage::kNone;
        ++accepted;
        conns.push_back(loop::Tcp::create(loop));
        loop::Tcp* c = conns.back().get();
        REQUIRE(uv_accept(listener->stream(), c->stream()) == 0);
        if (stop == Stage::kBanner) return drop(c);
        c->write("220 scripted ESMTP\r\n");
        auto buf = std::make_shared<std::string>();
        auto in_data = std::make_shared<bool>(false);
        auto tls_phase = std::make_shared<bool>(false);
        c->read_start([this, c, stop, buf, in_data, tls_phase](const char* data, ssize_t n) {
            if (n < 0) return;
            if (*tls_phase) {
                if (listener) c->write("this is not TLS\r\n");
                listener.reset();
                return;
            }
            buf->append(data, static_cast<size_t>(n));
            for (size_t eol; (eol = buf->find("\r\n")) != std::string::npos;) {
                std::string line = buf->substr(0, eol);
                buf->erase(0, eol + 2);
                if (*in_data) {
                    if (stop == Stage::kContent) return drop(c);
                    if (line != ".") continue;
                    *in_data = false;
                    ++dots;
                    if (stop == Stage::kDot) return drop(c);
                    ++delivered;
                    c->write("250 2.0.0 queued\r\n");
                    continue;
                }
                std::string verb = line.substr(0, 4);
                if ((verb == "EHLO" && stop == Stage::kEhlo) ||
                    (verb == "MAIL" && stop == Stage::kMail) ||
                    (verb == "RCPT" && stop == Stage::kRcpt) ||
                    (verb == "DATA" && stop == Stage::kData))
                    return drop(c);
                if (verb == "RCPT") {
                    size_t lt = line.find('<'), gt = line.find('>');
                    std::string addr = line.substr(lt + 1, gt - lt - 1);
                    rcpts.push_back(addr);
                    auto& replies = rcpt_replies[addr];
                    if (!replies.empty()) {
                        c->write(replies.front() + "\r\n");
                        replies.erase(replies.begin());
                    } else {
                        c->write("250 2.1.5 ok\r\n");
                    }
                    if (on_rcpt) on_rcpt(addr);
                } else if (verb == "STAR" && broken_starttls) {
                    // Plain bytes once the client's handshake arrives.
                    c->write("220 2.0.0 ready\r\n");
                    *tls_phase = true;
                    buf->clear();
                    return;
                } else if (verb == "DATA") {
                    *in_data = true;
                    c->write("354 go ahead\r\n");
                } else if (verb == "QUIT") {
                    c->write("221 bye\r\n");
                } else {
                    c->write(verb != "EHLO"    ? "250 2.0.0 ok\r\n"
                             : broken_starttls ? "250-scripted\r\n250 STARTTLS\r\n"
                                               : "250 scripted\r\n");
                }
            }
        });
    }
};

}  // namespace esad::test
