// The smtpping reply payload (control protocol v1), typed once for esad
// (daemon/control/cmd_tools.cc) and esactl (ctl/cmd_tools.cc): one struct per data line of
// the stream, each with its JSON mapping. The schema is daemon/control/cmd_tools.h's:
//   {"event":"start","rcpt","from","domain","route","host","tls_policy","message_id",
//    "spooled":false}
//   {"event":"stage","stage","ms","ok",...}   per stage; optional keys only when they apply:
//       "ip","port" (connect), "text" (when not empty; dns: always), "reply" (when not
//       empty), "protocol","cipher","verified" (tls, ok), "candidates" (dns)
//   {"event":"result","delivered","outcome","reply","total_ms","spooled":false} and, once a
//       transaction ran, "code","enhanced","tls","ip"
// Peer text is escaped by the daemon before it goes into these structs. from_json is lenient
// (a missing key keeps its default), as esactl was with the raw JSON.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace esad::payloads {

struct SmtppingStart {
    std::string rcpt, from, domain, route, host, tls_policy, message_id;
};

struct SmtppingCandidate {
    std::string ip;
    uint16_t port = 0;
    std::string mx;
};

struct SmtppingStage {
    std::string stage;  // dns, connect, banner, ehlo, ..., tls, note (delivery/smtp_probe.h)
    uint64_t ms = 0;
    bool ok = true;
    std::string ip;                  // connect
    uint16_t port = 0;               // connect
    std::string text;                // connect: local address or error; dns/tls/note: detail
    std::vector<std::string> reply;  // SMTP stages: the reply lines
    std::string protocol, cipher;    // tls
    bool verified = false;           // tls
    std::vector<SmtppingCandidate> candidates;  // dns
};

struct SmtppingResult {
    bool delivered = false;
    std::string outcome;             // delivered, soft, hard, no-recipients, not-sent
    std::vector<std::string> reply;  // "550 5.1.1 ..." (a local failure has no code)
    uint64_t total_ms = 0;
    struct Transaction {  // present once a transaction ran
        int code = 0;
        std::string enhanced;
        bool tls = false;
        std::string ip;
    };
    std::optional<Transaction> transaction;
};

inline void to_json(nlohmann::json& j, const SmtppingStart& s) {
    j = {{"event", "start"},
         {"rcpt", s.rcpt},
         {"from", s.from},
         {"domain", s.domain},
         {"route", s.route},
         {"host", s.host},
         {"tls_policy", s.tls_policy},
         {"message_id", s.message_id},
         {"spooled", false}};
}

inline void from_json(const nlohmann::json& j, SmtppingStart& s) {
    s.rcpt = j.value("rcpt", "");
    s.from = j.value("from", "");
    s.domain = j.value("domain", "");
    s.route = j.value("route", "");
    s.host = j.value("host", "");
    s.tls_policy = j.value("tls_policy", "");
    s.message_id = j.value("message_id", "");
}

inline void to_json(nlohmann::json& j, const SmtppingCandidate& c) {
    j = {{"ip", c.ip}, {"port", c.port}, {"mx", c.mx}};
}

inline void from_json(const nlohmann::json& j, SmtppingCandidate& c) {
    c.ip = j.value("ip", "");
    c.port = j.value("port", uint16_t{0});
    c.mx = j.value("mx", "");
}

inline void to_json(nlohmann::json& j, const SmtppingStage& s) {
    j = {{"event", "stage"}, {"stage", s.stage}, {"ms", s.ms}, {"ok", s.ok}};
    const bool dns = s.stage == "dns";
    if (!s.ip.empty()) {
        j["ip"] = s.ip;
        j["port"] = s.port;
    }
    if (!s.text.empty() || dns) j["text"] = s.text;
    if (!s.reply.empty()) j["reply"] = s.reply;
    if (s.stage == "tls" && s.ok) {
        j["protocol"] = s.protocol;
        j["cipher"] = s.cipher;
        j["verified"] = s.verified;
    }
    if (dns) j["candidates"] = s.candidates;
}

inline void from_json(const nlohmann::json& j, SmtppingStage& s) {
    s.stage = j.value("stage", "");
    s.ms = j.value("ms", uint64_t{0});
    s.ok = j.value("ok", false);
    s.ip = j.value("ip", "");
    s.port = j.value("port", uint16_t{0});
    s.text = j.value("text", "");
    s.reply = j.value("reply", std::vector<std::string>{});
    s.protocol = j.value("protocol", "");
    s.cipher = j.value("cipher", "");
    s.verified = j.value("verified", false);
    s.candidates = j.value("candidates", std::vector<SmtppingCandidate>{});
}

inline void to_json(nlohmann::json& j, const SmtppingResult& r) {
    j = {{"event", "result"}, {"delivered", r.delivered}, {"outcome", r.outcome},
         {"reply", r.reply},  {"total_ms", r.total_ms},   {"spooled", false}};
    if (r.transaction) {
        j["code"] = r.transaction->code;
        j["enhanced"] = r.transaction->enhanced;
        j["tls"] = r.transaction->tls;
        j["ip"] = r.transaction->ip;
    }
}

inline void from_json(const nlohmann::json& j, SmtppingResult& r) {
    r.delivered = j.value("delivered", false);
    r.outcome = j.value("outcome", "");
    r.reply = j.value("reply", std::vector<std::string>{});
    r.total_ms = j.value("total_ms", uint64_t{0});
    if (j.contains("code")) {
        r.transaction = SmtppingResult::Transaction{j.value("code", 0), j.value("enhanced", ""),
                                                    j.value("tls", false), j.value("ip", "")};
    }
}

}  // namespace esad::payloads
