// See web_api.h.
#include "ctl/web/web_api.h"

#include <algorithm>

namespace esad::web {

namespace {

using nlohmann::json;

constexpr int64_t kHistorySeconds = 3600;

Response json_response(int status, const json& body) {
    return {status, "application/json", body.dump()};
}

Response error(int status, const std::string& message) {
    return json_response(status, {{"error", message}});
}

std::string header(const Request& req, const std::string& name) {
    auto it = req.headers.find(name);
    return it == req.headers.end() ? "" : it->second;
}

// "http://host:port" -> "host:port"
std::string origin_host(const std::string& origin) {
    size_t scheme = origin.find("://");
    if (scheme == std::string::npos) return "";
    std::string rest = origin.substr(scheme + 3);
    return rest.substr(0, rest.find('/'));
}

}  // namespace

bool same_secret(const std::string& a, const std::string& b) {
    if (a.empty() || b.empty()) return false;
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < a.size(); ++i)
        diff |= static_cast<unsigned char>(a[i] ^ b[i % b.size()]);
    return diff == 0;
}

void History::add(int64_t unix_s, uint64_t active, uint64_t delivered) {
    std::lock_guard lock(mu_);
    points_.push_back({unix_s, active, delivered});
    auto old = std::find_if(points_.begin(), points_.end(),
                            [&](const Point& p) { return p.t >= unix_s - kHistorySeconds; });
    points_.erase(points_.begin(), old);
}

json History::to_json() const {
    std::lock_guard lock(mu_);
    json points = json::array();
    for (size_t i = 0; i < points_.size(); ++i) {
        const Point& p = points_[i];
        // Recipients delivered per minute since the previous sample (0 for the first).
        double rate = 0;
        if (i > 0 && p.t > points_[i - 1].t && p.delivered >= points_[i - 1].delivered)
            rate = static_cast<double>(p.delivered - points_[i - 1].delivered) * 60.0 /
                   static_cast<double>(p.t - points_[i - 1].t);
        points.push_back({{"t", p.t}, {"active", p.active}, {"delivered_per_min", rate}});
    }
    return {{"interval", interval_s_}, {"window", kHistorySeconds}, {"points", points}};
}

Response Api::daemon_call(const std::string& cmd, const json& args) const {
    std::string code, message;
    std::optional<json> data = call_(cmd, args, &code, &message);
    if (data) return json_response(200, *data);
    if (code == "not_found") return error(404, message);
    if (code == "bad_args") return error(400, message);
    if (code == "unreachable") return error(502, "esad does not answer: " + message);
    return error(500, message);
}

Response Api::handle(const Request& req) const {
    if (req.method == "GET" || req.method == "HEAD") {
        for (const auto& a : static_assets()) {
            if (req.path == a.path) {
                Response r{200, a.content_type, a.body};
                return r;
            }
        }
        if (req.path == "/api/hosts")
            return daemon_call("tophosts",
                               {{"sort", "active_rcpts"}, {"limit", options_.max_hosts}});
        if (req.path == "/api/hoststatus") {
            auto it = req.query.find("host");
            if (it == req.query.end() || it->second.empty()) return error(400, "host is required");
            return daemon_call("hoststatus", {{"domain", it->second}});
        }
        if (req.path == "/api/history") return json_response(200, history_->to_json());
        if (req.path == "/api/session")
            return json_response(
                200, {{"csrf", options_.csrf}, {"actions_enabled", !options_.token.empty()}});
        return error(404, "no such page");
    }
    if (req.method == "POST") {
        if (req.path == "/api/delivernow") return post_delivernow(req);
        return error(404, "no such page");
    }
    return error(405, "method not allowed");
}

Response Api::post_delivernow(const Request& req) const {
    if (options_.token.empty())
        return error(403, "actions are disabled: no [web] token_file is configured");
    std::string auth = header(req, "authorization");
    const std::string kBearer = "Bearer ";
    if (auth.compare(0, kBearer.size(), kBearer) != 0 ||
        !same_secret(auth.substr(kBearer.size()), options_.token))
        return error(401, "authentication required: a valid operator token");
    if (!same_secret(header(req, "x-csrf-token"), options_.csrf))
        return error(403, "missing or wrong CSRF token (reload the page)");
    std::string origin = header(req, "origin");
    if (!origin.empty() && origin_host(origin) != header(req, "host"))
        return error(403, "cross-origin request refused");
    std::string type = header(req, "content-type");
    if (type.compare(0, 16, "application/json") != 0)
        return error(415, "expected application/json");
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("target") ||
        !body["target"].is_string() || body["target"].get<std::string>().empty())
        return error(400, "expected {\"target\": \"all\" or a destination}");
    return daemon_call("delivernow", {{"target", body["target"]}});
}

}  // namespace esad::web
