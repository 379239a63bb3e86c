// A private temporary directory for one test, removed with everything in it at scope exit.
//   esad::test::TempDir dir("spool_store");   dir.path == "/tmp/esad_spool_store_XXXXXX"
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace esad::test {

struct TempDir {
    std::string path;
    explicit TempDir(const std::string& tag) {
        std::string tmpl = "/tmp/esad_" + tag + "_XXXXXX";
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

}  // namespace esad::test
