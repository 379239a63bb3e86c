// tls::Engine client and server wired to each other in memory (no sockets): handshake,
// data both ways, verification (chain, host name), failures, caps. Certificates are
// generated with the OpenSSL API into a temporary directory once per test process.
#include <catch2/catch.hpp>

#include <openssl/err.h>

#include <string>

#include "daemon/tls/tls_context.h"
#include "daemon/tls/tls_engine.h"
#include "tests/support/test_pki.h"

using esad::tls::ClientContext;
using esad::tls::ClientOptions;
using esad::tls::Engine;
using esad::tls::MinProtocol;
using esad::tls::ServerContext;
using State = Engine::State;

namespace {

using esad::test::pki;

std::shared_ptr<ServerContext> server_ctx() {
    std::string err;
    auto ctx = esad::tls::make_server_context(pki().cert_a, pki().key_a, &err);
    INFO(err);
    REQUIRE(ctx);
    return ctx;
}

std::shared_ptr<ClientContext> client_ctx(bool verify, const std::string& ca_file,
                                          MinProtocol min = MinProtocol::kTls12) {
    std::string err;
    ClientOptions options;
    options.verify = verify;
    options.ca_file = ca_file;
    options.min_protocol = min;
    auto ctx = esad::tls::make_client_context(options, &err);
    INFO(err);
    REQUIRE(ctx);
    return ctx;
}

// Moves ciphertext both ways until neither side has anything to send.
void pump(Engine& a, Engine& b) {
    for (int i = 0; i < 10000; ++i) {
        std::string x = a.take_ciphertext();
        std::string y = b.take_ciphertext();
        if (x.empty() && y.empty()) return;
        if (!x.empty()) b.feed_ciphertext(x);
        if (!y.empty()) a.feed_ciphertext(y);
        CHECK(ERR_peek_error() == 0);
    }
    FAIL("pump did not settle");
}

std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

}  // namespace

TEST_CASE("client and server engines handshake and exchange data") {
    auto sctx = server_ctx();
    auto cctx = client_ctx(true, pki().cert_a);
    auto server = Engine::server(*sctx);
    auto client = Engine::client(*cctx, "mx.test", "mx.test");
    CHECK(client->state() == State::kHandshaking);
    CHECK(server->state() == State::kHandshaking);
    CHECK(client->protocol().empty());
    pump(*client, *server);

    REQUIRE(client->state() == State::kEstablished);
    REQUIRE(server->state() == State::kEstablished);
    CHECK((client->protocol() == "TLSv1.2" || client->protocol() == "TLSv1.3"));
    CHECK(client->protocol() == server->protocol());
    CHECK_FALSE(client->cipher().empty());
    CHECK(client->cipher() == server->cipher());
    CHECK(client->verified());
    CHECK(client->verify_result() == "ok");
    CHECK(server->verify_result().empty());
    CHECK(client->error().empty());
    CHECK(ERR_peek_error() == 0);

    server->write_plaintext("220 mx.test ESMTP\r\n");
    pump(*client, *server);
    CHECK(client->take_plaintext() == "220 mx.test ESMTP\r\n");
    client->write_plaintext("EHLO client.test\r\n");
    pump(*client, *server);
    CHECK(server->take_plaintext() == "EHLO client.test\r\n");
    CHECK(server->take_plaintext().empty());

    SECTION("300 KiB in one write, both ways") {
        std::string big = pattern(300 * 1024);
        client->write_plaintext(big);
        pump(*client, *server);
        CHECK(server->take_plaintext() == big);
        server->write_plaintext(big);
        pump(*client, *server);
        CHECK(client->take_plaintext() == big);
        CHECK(client->state() == State::kEstablished);
        CHECK(server->state() == State::kEstablished);
    }
    SECTION("many small writes arrive in order") {
        std::string expected;
        for (int i = 0; i < 500; ++i) {
            std::string line = "RCPT TO:<r" + std::to_string(i) + "@example.test>\r\n";
            expected += line;
            client->write_plaintext(line);
        }
        pump(*client, *server);
        CHECK(server->take_plaintext() == expected);
    }
    SECTION("client shutdown sends close_notify; the server sees a clean close") {
        client->write_plaintext("QUIT\r\n");
        client->shutdown();
        CHECK(client->state() == State::kClosed);
        pump(*client, *server);
        CHECK(server->take_plaintext() == "QUIT\r\n");
        CHECK(server->state() == State::kClosed);
        CHECK(server->closed_by_peer());
        CHECK_FALSE(client->closed_by_peer());
        CHECK(server->error().empty());
        client->shutdown();  // idempotent
        client->write_plaintext("ignored");
        CHECK(client->take_ciphertext().empty());
    }
    SECTION("server shutdown is seen by the client") {
        server->shutdown();
        pump(*client, *server);
        CHECK(client->state() == State::kClosed);
        CHECK(client->closed_by_peer());
    }
    SECTION("garbage after the handshake fails the session") {
        server->feed_ciphertext(std::string(64, '\x17'));
        CHECK(server->state() == State::kFailed);
        CHECK_FALSE(server->error().empty());
        CHECK(ERR_peek_error() == 0);
    }
}

TEST_CASE("plaintext written before the handshake completes is delivered after it") {
    auto sctx = server_ctx();
    auto cctx = client_ctx(true, pki().cert_a);
    auto server = Engine::server(*sctx);
    auto client = Engine::client(*cctx, "mx.test", "mx.test");
    client->write_plaintext("EHLO early\r\n");
    server->write_plaintext("250 early\r\n");
    // Nothing of it may leave in the clear: only the ClientHello is there.
    std::string hello = client->take_ciphertext();
    CHECK(hello.find("EHLO") == std::string::npos);
    server->feed_ciphertext(hello);
    pump(*client, *server);
    REQUIRE(client->state() == State::kEstablished);
    CHECK(server->take_plaintext() == "EHLO early\r\n");
    CHECK(client->take_plaintext() == "250 early\r\n");
}

TEST_CASE("client verification: host name, trailing dot, TLS 1.3 minimum") {
    auto sctx = server_ctx();
    SECTION("trailing dot of the MX name is ignored") {
        auto cctx = client_ctx(true, pki().cert_a);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test.", "mx.test.");
        pump(*client, *server);
        CHECK(client->state() == State::kEstablished);
        CHECK(client->verified());
    }
    SECTION("TLS 1.3 minimum") {
        auto cctx = client_ctx(true, pki().cert_a, MinProtocol::kTls13);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        CHECK(client->state() == State::kEstablished);
        CHECK(client->protocol() == "TLSv1.3");
    }
    SECTION("TLS 1.2 peer (client capped at 1.2): forward-secret AEAD cipher") {
        auto cctx = client_ctx(true, pki().cert_a);
        REQUIRE(SSL_CTX_set_max_proto_version(cctx->native(), TLS1_2_VERSION) == 1);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        REQUIRE(client->state() == State::kEstablished);
        CHECK(server->protocol() == "TLSv1.2");
        CHECK(server->cipher().rfind("ECDHE-", 0) == 0);
        CHECK(server->cipher().find("GCM") != std::string::npos);
        CHECK(client->verified());
        client->write_plaintext(pattern(100000));
        pump(*client, *server);
        CHECK(server->take_plaintext() == pattern(100000));
    }
    SECTION("wrong host name fails the handshake when verifying") {
        auto cctx = client_ctx(true, pki().cert_a);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.example", "mx.example");
        pump(*client, *server);
        CHECK(client->state() == State::kFailed);
        CHECK(server->state() == State::kFailed);  // it got our alert
        CHECK_FALSE(client->verified());
        CHECK(client->verify_result().find("hostname mismatch") != std::string::npos);
        CHECK(client->verify_result().find("mx.example") != std::string::npos);
        CHECK(client->error().find("hostname mismatch") != std::string::npos);
        CHECK(client->error().find("certificate verify failed") != std::string::npos);
        CHECK(client->protocol().empty());
        CHECK(ERR_peek_error() == 0);
    }
    SECTION("untrusted chain fails the handshake when verifying (test CA file)") {
        auto cctx = client_ctx(true, pki().cert_b);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        CHECK(client->state() == State::kFailed);
        CHECK(client->verify_result().find("certificate verify failed: self") != std::string::npos);
        CHECK(client->error().find("certificate verify failed") != std::string::npos);
        INFO(client->error());
    }
    SECTION("untrusted chain fails the handshake when verifying (system store)") {
        auto cctx = client_ctx(true, "");
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        CHECK(client->state() == State::kFailed);
        CHECK(client->error().find("certificate verify failed") != std::string::npos);
    }
    SECTION("opportunistic: bad chain and name are reported, the session proceeds") {
        auto cctx = client_ctx(false, pki().cert_b);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.example", "mx.example");
        pump(*client, *server);
        CHECK(client->state() == State::kEstablished);
        CHECK_FALSE(client->verified());
        CHECK(client->verify_result().find("certificate verify failed") != std::string::npos);
        client->write_plaintext("x");
        pump(*client, *server);
        CHECK(server->take_plaintext() == "x");
    }
    SECTION("opportunistic with a good chain and name is verified") {
        auto cctx = client_ctx(false, pki().cert_a);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        CHECK(client->state() == State::kEstablished);
        CHECK(client->verified());
    }
    SECTION("an IP literal is not sent as SNI but still checked as the verify name") {
        auto cctx = client_ctx(false, pki().cert_a);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "192.0.2.1", "192.0.2.1");
        pump(*client, *server);
        CHECK(client->state() == State::kEstablished);
        CHECK_FALSE(client->verified());
    }
    SECTION("a host name with control characters is refused") {
        auto cctx = client_ctx(false, pki().cert_a);
        auto client = Engine::client(*cctx, "mx.test\r\nX", "mx.test");
        CHECK(client->state() == State::kFailed);
        CHECK(client->error() == "invalid SNI host name");
        CHECK(ERR_peek_error() == 0);
    }
}

TEST_CASE("a peer's alert is reported as the alert, not as a verification failure") {
    // Opportunistic client (verification reported, not enforced) against a TLS 1.2 server
    // that demands a client certificate: the client has seen an unverifiable certificate
    // (wrong CA) when the server's alert arrives.
    auto sctx = server_ctx();
    SSL_CTX_set_verify(sctx->native(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    REQUIRE(SSL_CTX_set_max_proto_version(sctx->native(), TLS1_2_VERSION) == 1);
    auto cctx = client_ctx(false, pki().cert_b);
    auto server = Engine::server(*sctx);
    auto client = Engine::client(*cctx, "mx.test", "mx.test");
    for (int i = 0; i < 100; ++i) {
        std::string x = client->take_ciphertext();
        std::string y = server->take_ciphertext();
        if (x.empty() && y.empty()) break;
        if (!x.empty()) server->feed_ciphertext(x);
        if (!y.empty()) client->feed_ciphertext(y);
    }
    ERR_clear_error();
    REQUIRE(client->state() == State::kFailed);
    INFO(client->error());
    CHECK(client->error().find("alert") != std::string::npos);
    CHECK(client->error().find("certificate verify failed") == std::string::npos);
    CHECK(client->verify_result().find("certificate verify failed") != std::string::npos);
}

TEST_CASE("garbage ciphertext fails the engine with an error, without a crash") {
    auto sctx = server_ctx();
    auto cctx = client_ctx(false, pki().cert_a);
    SECTION("server gets a plaintext SMTP command instead of a ClientHello") {
        auto server = Engine::server(*sctx);
        server->feed_ciphertext("MAIL FROM:<x@y>\r\n");
        CHECK(server->state() == State::kFailed);
        CHECK_FALSE(server->error().empty());
        CHECK(server->error().size() <= 512);
        CHECK(ERR_peek_error() == 0);
        server->take_ciphertext();  // may hold an alert
        server->feed_ciphertext("more");
        server->write_plaintext("more");
        CHECK(server->state() == State::kFailed);
        CHECK(server->take_plaintext().empty());
    }
    SECTION("client gets garbage instead of a ServerHello") {
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        CHECK_FALSE(client->take_ciphertext().empty());  // ClientHello
        std::string junk;
        for (int i = 0; i < 4096; ++i)
            junk += static_cast<char>(i * 131 + 7);
        client->feed_ciphertext(junk);
        CHECK(client->state() == State::kFailed);
        CHECK_FALSE(client->error().empty());
        for (char c : client->error())
            CHECK((c >= 0x20 && c < 0x7f));
        CHECK(ERR_peek_error() == 0);
    }
    SECTION("a failure leaves nothing behind for the next connection") {
        auto bad = Engine::server(*sctx);
        bad->feed_ciphertext(std::string("\x16\x03\x01\x00\x05garbage", 12));
        CHECK(bad->state() == State::kFailed);
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        CHECK(client->state() == State::kEstablished);
        CHECK(server->error().empty());
    }
}

TEST_CASE("memory caps fail the engine instead of growing") {
    auto sctx = server_ctx();
    auto cctx = client_ctx(true, pki().cert_a);
    SECTION("plaintext buffered before the handshake") {
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        client->write_plaintext(std::string(Engine::kMaxBuffered / 2, 'a'));
        CHECK(client->state() == State::kHandshaking);
        client->write_plaintext(std::string(Engine::kMaxBuffered / 2, 'b'));
        CHECK(client->state() == State::kFailed);
        CHECK(client->error().find("outbound") != std::string::npos);
        CHECK(ERR_peek_error() == 0);
    }
    SECTION("one write over the cap when established") {
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        REQUIRE(client->state() == State::kEstablished);
        client->write_plaintext(std::string(Engine::kMaxBuffered + 1, 'a'));
        CHECK(client->state() == State::kFailed);
    }
    SECTION("decrypted plaintext not taken") {
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        REQUIRE(client->state() == State::kEstablished);
        std::string chunk(256 * 1024, 'z');
        for (int i = 0; i < 4; ++i) {
            server->write_plaintext(chunk);
            pump(*client, *server);
        }
        CHECK(client->state() == State::kEstablished);  // exactly 1 MiB held: at the cap
        server->write_plaintext("!");
        pump(*client, *server);
        CHECK(client->state() == State::kFailed);
        CHECK(client->error().find("not taken") != std::string::npos);
        CHECK(client->take_plaintext().empty());  // freed
        CHECK(server->state() == State::kEstablished);
    }
    SECTION("taking the plaintext keeps a long stream going") {
        auto server = Engine::server(*sctx);
        auto client = Engine::client(*cctx, "mx.test", "mx.test");
        pump(*client, *server);
        std::string chunk(512 * 1024, 'q');
        size_t received = 0;
        for (int i = 0; i < 8; ++i) {
            client->write_plaintext(chunk);
            pump(*client, *server);
            received += server->take_plaintext().size();
        }
        CHECK(received == 8 * chunk.size());
        CHECK(server->state() == State::kEstablished);
    }
}

TEST_CASE("context errors carry a clear message and OpenSSL's text") {
    std::string err;
    SECTION("key does not match the certificate") {
        auto ctx = esad::tls::make_server_context(pki().cert_a, pki().key_b, &err);
        CHECK_FALSE(ctx);
        CHECK(err.find("does not match the certificate") != std::string::npos);
        CHECK(err.find(pki().key_b) != std::string::npos);
        CHECK(err.find("error:") != std::string::npos);
    }
    SECTION("missing certificate file") {
        auto ctx = esad::tls::make_server_context(pki().dir + "/nope.pem", pki().key_a, &err);
        CHECK_FALSE(ctx);
        CHECK(err.find("cannot load tls_cert") != std::string::npos);
        CHECK(err.find("nope.pem") != std::string::npos);
    }
    SECTION("key file that is not a key") {
        auto ctx = esad::tls::make_server_context(pki().cert_a, pki().cert_a, &err);
        CHECK_FALSE(ctx);
        CHECK(err.find("cannot read tls_key") != std::string::npos);
    }
    SECTION("missing CA file") {
        ClientOptions options;
        options.ca_file = pki().dir + "/no-ca.pem";
        auto ctx = esad::tls::make_client_context(options, &err);
        CHECK_FALSE(ctx);
        CHECK(err.find("cannot load CA file") != std::string::npos);
    }
    CHECK(ERR_peek_error() == 0);
    INFO(err);
    // The next context and connection are unaffected.
    auto sctx = server_ctx();
    auto server = Engine::server(*sctx);
    CHECK(server->state() == State::kHandshaking);
}

TEST_CASE("tls state names") {
    CHECK(esad::tls::to_string(State::kHandshaking) == "handshaking");
    CHECK(esad::tls::to_string(State::kEstablished) == "established");
    CHECK(esad::tls::to_string(State::kFailed) == "failed");
    CHECK(esad::tls::to_string(State::kClosed) == "closed");
    CHECK(esad::tls::to_string(MinProtocol::kTls13) == "TLSv1.3");
}
