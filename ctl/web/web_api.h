// esad-web's request handling, without HTTP plumbing: method + path + headers + body in,
// status + content type + body out (docs/web.md). esad_web.cc feeds it from libmicrohttpd.
//
//   GET  /, /app.js, /style.css      the Delivery Status page (built in, no other assets)
//   GET  /api/hosts                  tophosts, every destination (busiest [web] max_hosts)
//   GET  /api/hoststatus?host=H      hoststatus of one destination (404 when unknown)
//   GET  /api/history                active recipients and delivery rate, last hour
//   GET  /api/session                {csrf, actions_enabled}: the CSRF token for POSTs
//   POST /api/delivernow             {"target":"all"|DOMAIN}: Retry (All) Delivery
//
// Reads are open (the page listens on loopback by default). POST /api/delivernow needs
//   Authorization: Bearer <token>          the token from [web] token_file (401 otherwise)
//   X-CSRF-Token: <csrf>                   from /api/session (403 otherwise)
//   Content-Type: application/json         (415 otherwise; forms cannot send it cross-site)
//   and, when the browser sends Origin, an Origin whose host is the Host header (403).
// The CSRF token is random per process; the bearer token never goes into a cookie, so a
// page from another origin can neither read the CSRF token nor send the credentials.
// Errors are JSON {"error": "..."}; a daemon that does not answer is 502.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace esad::web {

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
};

struct Request {
    std::string method;
    std::string path;
    std::map<std::string, std::string> query;
    std::map<std::string, std::string> headers;  // names lower-case
    std::string body;
};

// One control-protocol call: the reply's data, or nullopt with *code/*message set
// (code "unreachable" when the daemon could not be asked).
using CallDaemon = std::function<std::optional<nlohmann::json>(
    const std::string& cmd, const nlohmann::json& args, std::string* code, std::string* message)>;

// Samples of the global gauges for the chart: one point per sampling interval, one hour.
class History {
  public:
    explicit History(uint64_t interval_s) : interval_s_(interval_s) {}
    // `delivered` is the daemon's lifetime delivered-recipients counter.
    void add(int64_t unix_s, uint64_t active, uint64_t delivered);
    nlohmann::json to_json() const;

  private:
    struct Point {
        int64_t t;
        uint64_t active;
        uint64_t delivered;
    };
    mutable std::mutex mu_;
    uint64_t interval_s_;
    std::vector<Point> points_;
};

struct ApiOptions {
    std::string token;  // empty: actions disabled
    std::string csrf;   // random per process
    uint32_t max_hosts = 1000;
};

class Api {
  public:
    Api(ApiOptions options, CallDaemon call, const History* history)
        : options_(std::move(options)), call_(std::move(call)), history_(history) {}
    Response handle(const Request& req) const;

  private:
    Response post_delivernow(const Request& req) const;
    Response daemon_call(const std::string& cmd, const nlohmann::json& args) const;
    ApiOptions options_;
    CallDaemon call_;
    const History* history_;
};

// Constant-time comparison (credentials).
bool same_secret(const std::string& a, const std::string& b);

// The built-in page (generated from ctl/web/static at build time).
struct StaticAsset {
    const char* path;
    const char* content_type;
    const char* body;
};
const std::vector<StaticAsset>& static_assets();

}  // namespace esad::web
