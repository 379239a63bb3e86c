// See make_dirs.h.
#include "common/make_dirs.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace esad {

bool make_dirs(const std::string& dir_text, mode_t mode, std::string* error) {
    namespace fs = std::filesystem;
    std::string dir = dir_text;
    while (dir.size() > 1 && dir.back() == '/')
        dir.pop_back();
    std::error_code ec;
    fs::path path(dir);
    if (fs::is_directory(path, ec)) return true;
    fs::path parent = path.lexically_normal().parent_path();
    if (!parent.empty() && !fs::is_directory(parent, ec)) {
        fs::create_directories(parent, ec);
        if (ec) {
            *error = "cannot create " + parent.string() + ": " + ec.message();
            return false;
        }
    }
    if (mkdir(dir.c_str(), mode) != 0 && !(errno == EEXIST && fs::is_directory(path, ec))) {
        *error = "cannot create " + dir + ": " + std::strerror(errno == EEXIST ? ENOTDIR : errno);
        return false;
    }
    return true;
}

}  // namespace esad
