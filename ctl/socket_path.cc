// See socket_path.h.
#include "ctl/socket_path.h"

#include <sys/stat.h>

#include <cstdlib>

#include "common/config.h"
#include "common/defaults.h"
#include "esad_install_paths.h"

namespace esad::ctl {

namespace {

// The same file, whatever path led to it (/bin is /usr/bin on merged-/usr systems).
bool same_file(const char* a, const char* b) {
    struct stat sa {
    }, sb{};
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

}  // namespace

std::string default_socket_path(
    const SocketLookup& lookup,
    const std::function<std::optional<std::string>(const std::string&)>& control_socket_of) {
    if (lookup.env && *lookup.env) return lookup.env;
    if (!lookup.installed) return kDefaultControlSocket;
    if (auto from_config = control_socket_of(lookup.config_file)) return *from_config;
    return lookup.runtime_socket;
}

std::string default_socket_path() {
    SocketLookup lookup;
    lookup.env = std::getenv(kCtlSocketEnv);
    lookup.installed = same_file("/proc/self/exe", kInstalledEsactl);
    lookup.config_file = kInstalledConfig;
    lookup.runtime_socket = kInstalledControlSocket;
    return default_socket_path(lookup, [](const std::string& path) -> std::optional<std::string> {
        ConfigResult loaded = load_config_file(path);
        if (!loaded.ok()) return std::nullopt;
        return loaded.config->daemon.control_socket;
    });
}

}  // namespace esad::ctl
