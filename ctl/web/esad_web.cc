// esad-web: the Delivery Status page (docs/web.md), a separate small program like esactl —
// a client of esad's control socket — serving HTTP with libmicrohttpd.
//
//   esad-web [--config PATH] [--address HOST:PORT] [--socket PATH] [--token-file PATH]
//            [--sample-interval S]
//
// Settings come from the [web] section and daemon.control_socket of esad's configuration
// (embedded defaults without --config); the options override them. It listens on
// 127.0.0.1:8025 by default. One libmicrohttpd thread answers requests (each API request is
// one blocking control-socket call with a 10 s timeout); one sampler thread asks `status`
// every --sample-interval seconds (default 10) for the chart's last hour. The token file
// must not be readable by everyone (exit 2 otherwise). Exit codes: 0 after SIGTERM/SIGINT,
// 2 usage or configuration errors, 1 when the address cannot be bound.
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/config.h"
#include "common/defaults.h"
#include "common/host_port.h"
#include "ctl/client.h"
#include "ctl/web/web_api.h"
#include "esad_version.h"

namespace {

using esad::web::Api;
using nlohmann::json;

constexpr size_t kMaxBody = 4096;

std::atomic<bool> g_stop{false};

void on_signal(int) {
    g_stop = true;
}

std::string random_hex(size_t bytes) {
    std::string raw(bytes, '\0');
    size_t got = 0;
    while (got < bytes) {
        ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
        if (n > 0) got += static_cast<size_t>(n);
    }
    static const char* kHex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : raw) {
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
    return out;
}

bool read_token(const std::string& path, std::string* token, std::string* error) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        *error = "web.token_file " + path + ": " + strerror(errno);
        return false;
    }
    if (st.st_mode & S_IROTH) {
        *error = "web.token_file " + path + " is readable by everyone; chmod o-r it";
        return false;
    }
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    *token = ss.str();
    while (!token->empty() && std::isspace(static_cast<unsigned char>(token->back())))
        token->pop_back();
    if (!in || token->size() < 8 || token->find('\n') != std::string::npos) {
        *error = "web.token_file " + path + ": expected one line of at least 8 characters";
        return false;
    }
    return true;
}

struct Server {
    const Api* api;
};

enum MHD_Result collect_kv(void* cls, enum MHD_ValueKind, const char* key, const char* value) {
    auto* m = static_cast<std::map<std::string, std::string>*>(cls);
    std::string k = key ? key : "";
    for (auto& c : k)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    (*m)[k] = value ? value : "";
    return MHD_YES;
}

enum MHD_Result send(MHD_Connection* conn, const esad::web::Response& r, bool head) {
    MHD_Response* resp = MHD_create_response_from_buffer(
        head ? 0 : r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", r.content_type.c_str());
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "img-src 'self'; connect-src 'self'; form-action 'none'; "
                            "frame-ancestors 'none'; base-uri 'none'");
    enum MHD_Result ret = MHD_queue_response(conn, static_cast<unsigned int>(r.status), resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result on_request(void* cls, MHD_Connection* conn, const char* url, const char* method,
                           const char*, const char* upload_data, size_t* upload_size,
                           void** con_cls) {
    auto* server = static_cast<Server*>(cls);
    if (*con_cls == nullptr) {
        *con_cls = new std::string();
        return MHD_YES;
    }
    auto* body = static_cast<std::string*>(*con_cls);
    if (*upload_size > 0) {
        if (body->size() + *upload_size > kMaxBody) {
            *upload_size = 0;
            body->assign("\x01");  // marker: too large
            return MHD_YES;
        }
        if (*body != "\x01") body->append(upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (*body == "\x01")
        return send(conn, {413, "application/json", R"({"error":"request body too large"})"},
                    false);
    esad::web::Request req;
    req.method = method;
    req.path = url;
    req.body = *body;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_kv, &req.headers);
    std::map<std::string, std::string> query;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_kv, &query);
    req.query = query;
    esad::web::Response r = server->api->handle(req);
    return send(conn, r, req.method == "HEAD");
}

void on_completed(void*, MHD_Connection*, void** con_cls, enum MHD_RequestTerminationCode) {
    delete static_cast<std::string*>(*con_cls);
    *con_cls = nullptr;
}

bool parse_address(const std::string& text, sockaddr_storage* out, bool* v6) {
    std::optional<esad::HostPort> hp = esad::parse_host_port(text);
    if (!hp) return false;
    std::memset(out, 0, sizeof *out);
    *v6 = hp->bracketed;
    if (hp->bracketed) {
        auto* a = reinterpret_cast<sockaddr_in6*>(out);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(*hp->port);
        return inet_pton(AF_INET6, hp->host.c_str(), &a->sin6_addr) == 1;
    }
    auto* a = reinterpret_cast<sockaddr_in*>(out);
    a->sin_family = AF_INET;
    a->sin_port = htons(*hp->port);
    return inet_pton(AF_INET, hp->host == "localhost" ? "127.0.0.1" : hp->host.c_str(),
                     &a->sin_addr) == 1;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"esad-web - the Delivery Status page for esad"};
    std::string config_path, address, socket_path, token_file;
    uint64_t sample_interval = 10;
    bool version = false;
    app.add_option("-c,--config", config_path, "esad configuration file ([web] section)");
    app.add_option("-a,--address", address, "HOST:PORT to listen on (default 127.0.0.1:8025)");
    app.add_option("-s,--socket", socket_path, "esad control socket");
    app.add_option("--token-file", token_file, "operator token for the Retry buttons");
    app.add_option("--sample-interval", sample_interval, "seconds between chart samples")
        ->check(CLI::Range(1, 3600));
    app.add_flag("-V,--version", version, "print the version");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    if (version) {
        std::cout << "esad-web " << ESAD_VERSION << "\n";
        return 0;
    }
    esad::ConfigResult loaded;
    if (config_path.empty()) {
        loaded = esad::load_config_string("", "<embedded defaults>");
    } else {
        loaded = esad::load_config_file(config_path);
    }
    if (!loaded.config) {
        for (const auto& e : loaded.errors)
            std::cerr << "esad-web: " << e.to_string(config_path) << "\n";
        return 2;
    }
    const esad::Config& config = *loaded.config;
    if (address.empty()) address = config.web.address;
    if (socket_path.empty()) socket_path = config.daemon.control_socket;
    if (token_file.empty()) token_file = config.web.token_file;

    esad::web::ApiOptions options;
    options.csrf = random_hex(32);
    options.max_hosts = config.web.max_hosts;
    if (!token_file.empty()) {
        std::string error;
        if (!read_token(token_file, &options.token, &error)) {
            std::cerr << "esad-web: " << error << "\n";
            return 2;
        }
    }
    sockaddr_storage addr{};
    bool v6 = false;
    if (!parse_address(address, &addr, &v6)) {
        std::cerr << "esad-web: bad address '" << address << "' (expected HOST:PORT)\n";
        return 2;
    }

    auto call = [socket_path](const std::string& cmd, const json& args, std::string* code,
                              std::string* message) -> std::optional<json> {
        esad::ctl::Client client;
        if (!client.connect(socket_path, 10, message)) {
            *code = "unreachable";
            return std::nullopt;
        }
        auto reply = client.call(cmd, args, message);
        if (!reply) {
            *code = "unreachable";
            return std::nullopt;
        }
        if (!reply->ok) {
            *code = reply->error_code;
            *message = reply->error_message;
            return std::nullopt;
        }
        return reply->data;
    };
    esad::web::History history(sample_interval);
    Api api(options, call, &history);
    Server server{&api};

    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (v6) flags |= MHD_USE_IPv6;
    MHD_Daemon* daemon = MHD_start_daemon(
        flags, 0, nullptr, nullptr, &on_request, &server, MHD_OPTION_SOCK_ADDR,
        reinterpret_cast<sockaddr*>(&addr), MHD_OPTION_NOTIFY_COMPLETED, &on_completed, nullptr,
        MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(64 * 1024), MHD_OPTION_END);
    if (!daemon) {
        std::cerr << "esad-web: cannot listen on " << address << ": " << strerror(errno) << "\n";
        return 1;
    }
    const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    std::cerr << "esad-web " << ESAD_VERSION << ": Delivery Status on http://"
              << address.substr(0, address.rfind(':')) << ":" << (info ? info->port : 0)
              << "/ (control socket " << socket_path << ", actions "
              << (options.token.empty() ? "disabled: no token file" : "need the operator token")
              << ")" << std::endl;

    // The sampler: global gauges for the chart, every sample_interval seconds.
    std::thread sampler([&] {
        while (!g_stop) {
            std::string code, message;
            if (auto s = call("status", json::object(), &code, &message)) {
                uint64_t active = 0, delivered = 0;
                if ((*s).contains("gauges"))
                    active = (*s)["gauges"].value("active_recipients", 0ull);
                if ((*s).contains("counters") && (*s)["counters"].contains("delivered_recipients"))
                    delivered = (*s)["counters"]["delivered_recipients"].value("uptime", 0ull);
                history.add(static_cast<int64_t>(std::time(nullptr)), active, delivered);
            }
            for (uint64_t i = 0; i < sample_interval * 10 && !g_stop; ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    });
    while (!g_stop)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    sampler.join();
    MHD_stop_daemon(daemon);
    return 0;
}
