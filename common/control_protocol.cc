// Control protocol v1 codec and framing; see control_protocol.h.
#include "common/control_protocol.h"

#include "common/utf8.h"

namespace esad::control {

using nlohmann::json;

bool valid_utf8(std::string_view s) {
    return esad::valid_utf8(s);
}

int json_depth(std::string_view s, int limit) {
    int depth = 0, max_depth = 0;
    bool in_string = false, escaped = false;
    for (char c : s) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) max_depth = depth;
            if (max_depth > limit) return max_depth;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return max_depth;
}

ParsedRequest parse_request(std::string_view line) {
    ParsedRequest out;
    auto fail = [&](const char* code, std::string message, std::optional<int64_t> id = {}) {
        out.error = {code, std::move(message), id};
        return out;
    };
    if (line.size() > kMaxLineBytes) return fail("too_large", "request exceeds 1 MiB");
    if (!valid_utf8(line)) return fail("bad_request", "request is not valid UTF-8");
    if (json_depth(line, kMaxDepth) > kMaxDepth)
        return fail("bad_request", "request nests too deeply");
    json doc = json::parse(line, nullptr, false);
    if (doc.is_discarded()) return fail("bad_request", "request is not valid JSON");
    if (!doc.is_object()) return fail("bad_request", "request must be a JSON object");

    std::optional<int64_t> id;
    auto id_it = doc.find("id");
    if (id_it == doc.end() || !id_it->is_number_integer())
        return fail("bad_request", "request needs an integer \"id\"");
    id = id_it->get<int64_t>();

    auto v_it = doc.find("v");
    if (v_it == doc.end() || !v_it->is_number_integer())
        return fail("bad_request", "request needs an integer \"v\"", id);
    if (v_it->get<int64_t>() != kProtocolVersion)
        return fail(
            "unsupported_version",
            "protocol version " + v_it->dump() + " is not supported (this daemon speaks v1)", id);

    auto cmd_it = doc.find("cmd");
    if (cmd_it == doc.end() || !cmd_it->is_string() ||
        cmd_it->get_ref<const std::string&>().empty())
        return fail("bad_request", "request needs a string \"cmd\"", id);

    Request req;
    req.id = *id;
    req.cmd = cmd_it->get<std::string>();
    auto args_it = doc.find("args");
    if (args_it != doc.end()) {
        if (!args_it->is_object()) return fail("bad_request", "\"args\" must be an object", id);
        req.args = *args_it;
    }
    out.request = std::move(req);
    return out;
}

std::string encode_request(const Request& r) {
    json j = {{"v", kProtocolVersion}, {"id", r.id}, {"cmd", r.cmd}, {"args", r.args}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_ok(int64_t id, const json& data) {
    json j = {{"v", kProtocolVersion}, {"id", id}, {"ok", true}, {"data", data}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_error(std::optional<int64_t> id, const std::string& code,
                         const std::string& message) {
    json j = {{"v", kProtocolVersion},
              {"id", id ? json(*id) : json(nullptr)},
              {"ok", false},
              {"error", {{"code", code}, {"message", message}}}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_end(int64_t id) {
    json j = {{"v", kProtocolVersion}, {"id", id}, {"ok", true}, {"end", true}};
    return j.dump() + "\n";
}

std::optional<Reply> parse_reply(std::string_view line) {
    if (line.size() > kMaxLineBytes || json_depth(line, kMaxDepth) > kMaxDepth) return std::nullopt;
    json doc = json::parse(line, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
    // Every field is type-checked before it is read: a hostile or broken peer gets
    // "not a reply", never an exception or a float-to-integer conversion.
    auto v = doc.find("v");
    if (v == doc.end() || !v->is_number_integer() || v->get<int64_t>() != kProtocolVersion)
        return std::nullopt;
    Reply r;
    if (auto id = doc.find("id"); id != doc.end() && id->is_number_integer())
        r.id = id->get<int64_t>();
    auto ok = doc.find("ok");
    if (ok == doc.end() || !ok->is_boolean()) return std::nullopt;
    r.ok = ok->get<bool>();
    if (auto end = doc.find("end"); end != doc.end()) {
        if (!end->is_boolean()) return std::nullopt;
        r.end = end->get<bool>();
    }
    if (r.ok) {
        if (auto data = doc.find("data"); data != doc.end()) r.data = *data;
    } else {
        r.error_code = "internal";
        auto e = doc.find("error");
        if (e == doc.end()) return r;
        if (!e->is_object()) return std::nullopt;
        auto code = e->find("code");
        auto message = e->find("message");
        if ((code != e->end() && !code->is_string()) ||
            (message != e->end() && !message->is_string()))
            return std::nullopt;
        if (code != e->end()) r.error_code = code->get<std::string>();
        if (message != e->end()) r.error_message = message->get<std::string>();
    }
    return r;
}

std::optional<std::string> LineFramer::next_line() {
    if (overflowed_) return std::nullopt;
    size_t nl = buffer_.find('\n', scan_from_);
    if (nl == std::string::npos) {
        scan_from_ = buffer_.size();
        // A full-length line whose CR arrived in this read and whose LF is still to come is
        // not (yet) too long: the verdict must not depend on where a read ends.
        const bool cr_pending = buffer_.size() == max_line_ + 1 && buffer_.back() == '\r';
        if (buffer_.size() > max_line_ && !cr_pending) overflowed_ = true;
        return std::nullopt;
    }
    if (nl > max_line_ + 1) {
        overflowed_ = true;
        return std::nullopt;
    }
    std::string line = buffer_.substr(0, nl);
    buffer_.erase(0, nl + 1);
    scan_from_ = 0;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > max_line_) {
        overflowed_ = true;
        return std::nullopt;
    }
    return line;
}

}  // namespace esad::control
