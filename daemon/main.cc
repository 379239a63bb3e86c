// esad entry point: command line, configuration, then hand over to Daemon.
//   esad [--config PATH] [--check-config] [--foreground] [--version]
// Exit codes: 0 clean stop, 1 runtime failure, 2 configuration or usage error.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "common/config.h"
#include "daemon/daemon.h"
#include "daemon/logs/daemon_log.h"
#include "esad_version.h"

int main(int argc, char** argv) {
    CLI::App app{"esad - outbound mail delivery daemon"};
    std::string config_path;
    bool check_only = false;
    bool foreground = true;
    bool version = false;
    app.add_option("-c,--config", config_path,
                   "configuration file (TOML); default: embedded defaults");
    app.add_flag("--check-config", check_only, "validate the configuration and exit");
    app.add_flag("-f,--foreground", foreground,
                 "run in the foreground (the default; esad never forks, systemd supervises it)");
    app.add_flag("-V,--version", version, "print the version and exit");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    if (version) {
        std::cout << "esad " << ESAD_VERSION << "\n";
        return 0;
    }

    esad::ConfigResult loaded = config_path.empty()
                                    ? esad::load_config_string("", "<embedded defaults>")
                                    : esad::load_config_file(config_path);
    if (!loaded.ok()) {
        std::string origin = config_path.empty() ? "<embedded defaults>" : config_path;
        for (const auto& e : loaded.errors)
            std::cerr << "esad: config error: " << e.to_string(origin) << "\n";
        return 2;
    }
    if (check_only) {
        std::cout << "esad: configuration " << loaded.config->origin << " is valid\n";
        return 0;
    }

    std::string error;
    if (!esad::logs::setup_daemon_log(loaded.config->logging.daemon_log,
                                      loaded.config->logging.level, &error)) {
        std::cerr << "esad: " << error << "\n";
        return 2;
    }
    // Spool commits, journal syncs and content reads share libuv's thread pool; its default
    // of 4 threads would serialise fsyncs that the file system can overlap.
    if (!getenv("UV_THREADPOOL_SIZE")) setenv("UV_THREADPOOL_SIZE", "16", 1);
    esad::Daemon daemon(std::move(*loaded.config), config_path);
    return daemon.run();
}
