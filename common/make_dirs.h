// make_dirs — the one "mkdir -p" in esad (state directory, control socket directory, log
// directories). Missing parents are created as std::filesystem makes them (0777 less the
// umask); the last component gets `mode` (also less the umask). An existing directory is
// success and keeps its mode; an existing non-directory is an error.
#pragma once

#include <sys/types.h>

#include <string>

namespace esad {

// False with `error` set to "cannot create DIR: reason".
bool make_dirs(const std::string& dir, mode_t mode, std::string* error);

}  // namespace esad
