// The one mkdir -p (common/make_dirs.h): parents created, the leaf's mode, existing
// directories accepted, a file in the way refused with its name.
#include <sys/stat.h>
#include <catch2/catch.hpp>

#include <fstream>

#include "common/make_dirs.h"
#include "tests/support/temp_dir.h"

TEST_CASE("make_dirs creates parents and gives the leaf its mode") {
    esad::test::TempDir tmp("make_dirs");
    mode_t old = umask(022);
    std::string dir = tmp.path + "/a/b/c/";
    std::string error;
    REQUIRE(esad::make_dirs(dir, 0750, &error));
    struct stat st {};
    REQUIRE(stat((tmp.path + "/a/b/c").c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 07777) == 0750);
    // Existing: success, mode untouched.
    REQUIRE(chmod((tmp.path + "/a/b/c").c_str(), 0700) == 0);
    CHECK(esad::make_dirs(tmp.path + "/a/b/c", 0750, &error));
    REQUIRE(stat((tmp.path + "/a/b/c").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0700);
    // A file where a directory should be.
    std::ofstream(tmp.path + "/file") << "x";
    CHECK_FALSE(esad::make_dirs(tmp.path + "/file", 0750, &error));
    CHECK(error.find(tmp.path + "/file") != std::string::npos);
    CHECK_FALSE(esad::make_dirs(tmp.path + "/file/sub", 0750, &error));
    CHECK(error.find("cannot create") == 0);
    umask(old);
}
