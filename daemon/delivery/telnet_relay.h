// TelnetRelay: the daemon's side of `esactl telnet` — a raw TCP connection to a remote
// host from the delivery source address (an OutboundConnection, as delivery's), relaying
// lines both ways (esa-reference §7.2).
//
//   auto relay = std::make_shared<TelnetRelay>(loop, ips, 25, source, TelnetLimits{}, callbacks);
//   relay->start();                 // tries each IP in order, like telnet(1)
//   relay->send_line("EHLO x", &err);   // CRLF appended; false + err when not possible
//   relay->close("closed by operator"); // on_closed runs, then nothing more
//
// Callbacks, in order: on_trying(ip) per address; on_connect_failed(ip, error) per failed
// address; on_connected(ip, local address) at most once; on_line(bytes) per line received
// (raw peer bytes without the line end: the caller escapes them); on_closed(reason) exactly
// once, last — also when close() is called. Callbacks may call close() or drop the last
// reference to the relay (it holds itself alive for the duration of each callback).
//
// Bounds (TelnetLimits): a received line longer than max_line is delivered in pieces; after
// max_received octets from the peer or max_sent octets to it the connection is closed; no
// traffic either way for idle_ms closes it; each connect attempt gives up after connect_ms.
// A partial last line is delivered when the connection ends. Logs nothing.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/delivery/outbound_connection.h"

namespace esad::delivery {

struct TelnetLimits {
    size_t max_line = 4096;
    uint64_t max_received = 4 * 1024 * 1024;
    uint64_t max_sent = 1024 * 1024;
    uint64_t idle_ms = 5 * 60 * 1000;
    uint64_t connect_ms = 30 * 1000;
};

class TelnetRelay : public std::enable_shared_from_this<TelnetRelay> {
  public:
    struct Callbacks {
        std::function<void(const std::string& ip)> on_trying;
        std::function<void(const std::string& ip, const std::string& error)> on_connect_failed;
        std::function<void(const std::string& ip, const std::string& local)> on_connected;
        std::function<void(std::string_view line)> on_line;
        std::function<void(const std::string& reason)> on_closed;
    };

    TelnetRelay(uv_loop_t* loop, std::vector<std::string> ips, uint16_t port, std::string source,
                TelnetLimits limits, Callbacks callbacks);
    ~TelnetRelay();

    void start();
    bool send_line(std::string_view line, std::string* error);
    void close(const std::string& reason);
    bool connected() const { return connected_; }
    bool closed() const { return closed_; }

  private:
    template <typename Owner>
    friend OutboundConnection::Callbacks callbacks_for(const std::shared_ptr<Owner>& owner);
    void try_next();
    void on_connected(const std::string& local);
    void on_data(std::string_view bytes);
    void on_tls(const tls::Engine&) {}  // never starts TLS
    void on_failed(const OutboundConnection::Failure& failure);
    void arm_idle();
    void finish(const std::string& reason);

    uv_loop_t* loop_;
    std::vector<std::string> ips_;
    size_t index_ = 0;
    uint16_t port_;
    std::string source_;
    TelnetLimits limits_;
    Callbacks cb_;
    std::shared_ptr<OutboundConnection> conn_;
    std::string buffer_;
    std::string last_error_;
    uint64_t received_ = 0;
    uint64_t sent_ = 0;
    bool connected_ = false;
    bool closed_ = false;
};

}  // namespace esad::delivery
