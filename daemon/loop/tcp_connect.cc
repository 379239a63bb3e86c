// See tcp_connect.h.
#include "daemon/loop/tcp_connect.h"

namespace esad::loop {

namespace {
struct ConnectReq {
    uv_connect_t req;
    std::function<void(int)> done;
};
}  // namespace

bool make_sockaddr(const std::string& ip, uint16_t port, sockaddr_storage* out) {
    *out = {};
    if (ip.find(':') != std::string::npos)
        return uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
    return uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0;
}

bool is_ip_literal(const std::string& text) {
    sockaddr_storage addr{};
    return !text.empty() && make_sockaddr(text, 0, &addr);
}

bool tcp_connect(Tcp& tcp, const std::string& ip, uint16_t port, const std::string& source,
                 std::function<void(int status)> done, std::string* error,
                 ConnectStartError* kind) {
    ConnectStartError ignored;
    if (!kind) kind = &ignored;
    *kind = ConnectStartError::kAddress;
    sockaddr_storage addr{};
    if (!make_sockaddr(ip, port, &addr)) {
        *error = "bad address " + ip;
        return false;
    }
    if (!source.empty()) {
        sockaddr_storage src{};
        if (!make_sockaddr(source, 0, &src)) {
            *error = "bad source address " + source;
            return false;
        }
        int rc = uv_tcp_bind(tcp.tcp(), reinterpret_cast<sockaddr*>(&src), 0);
        if (rc != 0) {
            *kind = ConnectStartError::kBind;
            *error = "cannot bind source address " + source + ": " + uv_strerror(rc);
            return false;
        }
    }
    auto* req = new ConnectReq{{}, std::move(done)};
    req->req.data = req;
    int rc = uv_tcp_connect(&req->req, tcp.tcp(), reinterpret_cast<sockaddr*>(&addr),
                            [](uv_connect_t* r, int status) {
                                auto* cr = static_cast<ConnectReq*>(r->data);
                                std::function<void(int)> cb = std::move(cr->done);
                                delete cr;
                                if (cb) cb(status);
                            });
    if (rc != 0) {
        delete req;
        *kind = ConnectStartError::kConnect;
        *error = uv_strerror(rc);
        return false;
    }
    return true;
}

std::string local_address(Tcp& tcp) {
    sockaddr_storage local{};
    int len = sizeof local;
    char text[INET6_ADDRSTRLEN] = "?";
    if (uv_tcp_getsockname(tcp.tcp(), reinterpret_cast<sockaddr*>(&local), &len) == 0) {
        if (local.ss_family == AF_INET6)
            uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&local), text, sizeof text);
        else
            uv_ip4_name(reinterpret_cast<sockaddr_in*>(&local), text, sizeof text);
    }
    return text;
}

}  // namespace esad::loop
