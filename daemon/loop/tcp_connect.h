// Outbound TCP connect for a loop::Tcp: parses the textual addresses, binds the optional
// source address (the delivery interface, as delivery does) and starts uv_tcp_connect.
//
//   auto tcp = loop::Tcp::create(loop);
//   std::string err;
//   if (!loop::tcp_connect(*tcp, "192.0.2.1", 25, source, [weak](int status) { ... }, &err))
//       ... err: "bad address x", "cannot bind source address 10.0.0.1: ..." (and *kind)
//
// `done` runs exactly once when the connect completes (status 0 or a uv error, UV_ECANCELED
// when the handle was closed first); never from inside tcp_connect(). It must hold only weak
// references to its owner: the request can complete after the owner is gone. Logs nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "daemon/loop/handle.h"

namespace esad::loop {

// "192.0.2.1" / "2001:db8::1" and a port → *out. false when not an IP literal.
bool make_sockaddr(const std::string& ip, uint16_t port, sockaddr_storage* out);
// True when `text` is an IPv4 or IPv6 literal.
bool is_ip_literal(const std::string& text);

// Why tcp_connect() could not start: an address that is not an IP literal, a source
// address that cannot be bound, or libuv refusing the connect.
enum class ConnectStartError { kAddress, kBind, kConnect };

bool tcp_connect(Tcp& tcp, const std::string& ip, uint16_t port, const std::string& source,
                 std::function<void(int status)> done, std::string* error,
                 ConnectStartError* kind = nullptr);

// The local address of a connected handle ("127.0.0.1"), "?" when unknown.
std::string local_address(Tcp& tcp);

}  // namespace esad::loop
