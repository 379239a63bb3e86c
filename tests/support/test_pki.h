// Self-signed test identities for the TLS tests (loop tier), generated with the OpenSSL API
// into a temporary directory once per test process and removed at exit:
//   const esad::test::Pki& p = esad::test::pki();   // p.cert_a / p.key_a: "mx.test"
//                                                   // p.cert_b / p.key_b: "other.test"
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

namespace esad::test {

// A self-signed EC P-256 certificate with CN and subjectAltName DNS:<name>.
inline bool write_self_signed(const std::string& name, const std::string& key_path,
                              const std::string& cert_path) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    bool ok = key && cert;
    if (ok) {
        X509_set_version(cert, X509_VERSION_3);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
        X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
        X509_set_pubkey(cert, key);
        X509_NAME* subject = X509_get_subject_name(cert);
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
        X509_set_issuer_name(cert, subject);
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
        std::string san = "DNS:" + name;
        const std::pair<int, std::string> exts[] = {{NID_basic_constraints, "critical,CA:TRUE"},
                                                    {NID_subject_key_identifier, "hash"},
                                                    {NID_subject_alt_name, san}};
        for (const auto& [nid, value] : exts) {
            X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
            ok = ok && ext && X509_add_ext(cert, ext, -1) == 1;
            X509_EXTENSION_free(ext);
        }
        ok = ok && X509_sign(cert, key, EVP_sha256()) > 0;
    }
    if (ok) {
        FILE* kf = fopen(key_path.c_str(), "w");
        FILE* cf = fopen(cert_path.c_str(), "w");
        ok = kf && cf && PEM_write_PrivateKey(kf, key, nullptr, nullptr, 0, nullptr, nullptr) &&
             PEM_write_X509(cf, cert);
        if (kf) fclose(kf);
        if (cf) fclose(cf);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return ok;
}

// Two unrelated self-signed identities: "a" is mx.test, "b" is other.test.
struct Pki {
    std::string dir;
    std::string key_a, cert_a, key_b, cert_b;
    bool ok = false;

    Pki() {
        char tmpl[] = "/tmp/esad_tls_test.XXXXXX";
        if (!mkdtemp(tmpl)) return;
        dir = tmpl;
        key_a = dir + "/a.key";
        cert_a = dir + "/a.pem";
        key_b = dir + "/b.key";
        cert_b = dir + "/b.pem";
        ok = write_self_signed("mx.test", key_a, cert_a) &&
             write_self_signed("other.test", key_b, cert_b);
    }
    ~Pki() {
        for (const auto& f : {key_a, cert_a, key_b, cert_b})
            unlink(f.c_str());
        if (!dir.empty()) rmdir(dir.c_str());
    }
};

inline const Pki& pki() {
    static Pki p;
    REQUIRE(p.ok);
    return p;
}

}  // namespace esad::test
