// SSL_CTX construction for tls_context.h. Contract there.
#include "daemon/tls/tls_context.h"
#include "daemon/tls/tls_engine.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace esad::tls {

namespace {

constexpr size_t kMaxErrorText = 512;

// TLS 1.2 suites: forward secrecy only (no static RSA), AEAD first, CBC kept last for old
// senders. TLS 1.3 suites are OpenSSL's defaults (all AEAD).
constexpr const char* kServerCipherList =
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:DHE+AES"
    ":!aNULL:!eNULL:!MD5:!DSS:!PSK:!SRP:!CAMELLIA:!ARIA";

// Never prompt for a passphrase: a daemon has no tty, and a prompt would block the loop.
int no_passphrase(char*, int, int, void*) {
    return -1;
}

std::string fail(std::string* error, std::string text) {
    std::string queue = take_openssl_errors();
    if (!queue.empty()) text += ": " + queue;
    if (error) *error = printable(text, kMaxErrorText);
    return text;
}

struct PkeyFree {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct BioFree {
    void operator()(BIO* bio) const { BIO_free(bio); }
};

// Settings both sides share.
SSL_CTX* new_ctx(const SSL_METHOD* method, MinProtocol min) {
    SSL_CTX* ctx = SSL_CTX_new(method);
    if (!ctx) return nullptr;
    int version = min == MinProtocol::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(ctx, version) != 1) {
        SSL_CTX_free(ctx);
        return nullptr;
    }
    // Renegotiation is a DoS vector and nothing in SMTP needs it; compression leaks (CRIME).
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    // The engine retries writes from a std::string that may move, one record at a time;
    // idle connections give their read/write buffers back.
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    return ctx;
}

}  // namespace

std::string_view to_string(MinProtocol protocol) {
    switch (protocol) {
        case MinProtocol::kTls12:
            return "TLSv1.2";
        case MinProtocol::kTls13:
            return "TLSv1.3";
    }
    return "?";
}

std::string printable(std::string_view text, size_t max_len) {
    std::string out;
    bool cut = text.size() > max_len;
    if (cut) text = text.substr(0, max_len > 3 ? max_len - 3 : 0);
    out.reserve(text.size() + 3);
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        out += (u >= 0x20 && u < 0x7f) ? c : '?';
    }
    if (cut) out += "...";
    return out;
}

std::string take_openssl_errors() {
    std::string out;
    const char* data = nullptr;
    int flags = 0;
    unsigned long code;
    while ((code = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
        if (out.size() >= kMaxErrorText) continue;  // keep draining, stop appending
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
        if ((flags & ERR_TXT_STRING) && data && *data) {
            out += " (";
            out += data;
            out += ")";
        }
    }
    return printable(out, kMaxErrorText);
}

std::shared_ptr<ServerContext> make_server_context(const std::string& cert_path,
                                                   const std::string& key_path,
                                                   std::string* error) {
    ERR_clear_error();
    SSL_CTX* raw = new_ctx(TLS_server_method(), MinProtocol::kTls12);
    if (!raw) {
        fail(error, "cannot create the TLS server context");
        return nullptr;
    }
    auto ctx = std::make_shared<ServerContext>(raw);
    SSL_CTX_set_options(raw, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(raw, 0);
    SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_dh_auto(raw, 1);
    if (SSL_CTX_set_cipher_list(raw, kServerCipherList) != 1) {
        fail(error, "cannot set the TLS server cipher list");
        return nullptr;
    }
    if (SSL_CTX_use_certificate_chain_file(raw, cert_path.c_str()) != 1) {
        fail(error, "cannot load tls_cert " + cert_path);
        return nullptr;
    }
    // Read the key ourselves so a mismatch is reported as such rather than as a load error.
    std::unique_ptr<BIO, BioFree> bio(BIO_new_file(key_path.c_str(), "r"));
    if (!bio) {
        fail(error, "cannot open tls_key " + key_path);
        return nullptr;
    }
    std::unique_ptr<EVP_PKEY, PkeyFree> key(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    if (!key) {
        fail(error, "cannot read tls_key " + key_path +
                        " (PEM private key expected; encrypted keys are not supported)");
        return nullptr;
    }
    X509* cert = SSL_CTX_get0_certificate(raw);
    if (!cert || X509_check_private_key(cert, key.get()) != 1) {
        fail(error, "tls_key " + key_path + " does not match the certificate in " + cert_path);
        return nullptr;
    }
    if (SSL_CTX_use_PrivateKey(raw, key.get()) != 1 || SSL_CTX_check_private_key(raw) != 1) {
        fail(error, "cannot use tls_key " + key_path);
        return nullptr;
    }
    ERR_clear_error();
    return ctx;
}

std::shared_ptr<ClientContext> make_client_context(const ClientOptions& options,
                                                   std::string* error) {
    ERR_clear_error();
    SSL_CTX* raw = new_ctx(TLS_client_method(), options.min_protocol);
    if (!raw) {
        fail(error, "cannot create the TLS client context (min protocol " +
                        std::string(to_string(options.min_protocol)) + ")");
        return nullptr;
    }
    auto ctx = std::make_shared<ClientContext>(raw, options.verify);
    SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
    if (options.ca_file.empty()) {
        if (SSL_CTX_set_default_verify_paths(raw) != 1) {
            fail(error, "cannot load the system trust store");
            return nullptr;
        }
    } else if (SSL_CTX_load_verify_locations(raw, options.ca_file.c_str(), nullptr) != 1) {
        fail(error, "cannot load CA file " + options.ca_file);
        return nullptr;
    }
    // The engine decides per connection; with SSL_VERIFY_NONE OpenSSL still verifies and
    // records the result, which is what opportunistic TLS reports.
    SSL_CTX_set_verify(raw, options.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    // Secrets go nowhere unless an engine has a key log sink (domaindebug domains only).
    SSL_CTX_set_keylog_callback(raw, &Engine::keylog_callback);
    ERR_clear_error();
    return ctx;
}

}  // namespace esad::tls
