// A listening TCP handle on 127.0.0.1, port 0 (the kernel picks), for loop-tier tests:
//   uint16_t port;
//   auto listener = esad::test::listen_loopback(loop, &port, [&](int status) { ... });
#pragma once

#include <catch2/catch.hpp>

#include "daemon/loop/handle.h"
#include "daemon/loop/tcp_connect.h"

namespace esad::test {

inline loop::HandlePtr<loop::Tcp> listen_loopback(uv_loop_t* loop, uint16_t* port,
                                                  loop::Stream::ConnectionCallback on_connection) {
    auto listener = loop::Tcp::create(loop);
    sockaddr_storage addr{};
    loop::make_sockaddr("127.0.0.1", 0, &addr);
    REQUIRE(uv_tcp_bind(listener->tcp(), reinterpret_cast<sockaddr*>(&addr), 0) == 0);
    int len = sizeof addr;
    uv_tcp_getsockname(listener->tcp(), reinterpret_cast<sockaddr*>(&addr), &len);
    *port = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    REQUIRE(listener->listen(8, std::move(on_connection)) == 0);
    return listener;
}

}  // namespace esad::test
