// Control command `packetcapture` (docs/capture.md): what esactl needs to start a capture
// and what it shows about captures. The daemon never captures: the esad-capture helper,
// started by esactl, holds CAP_NET_RAW just long enough to open its socket and writes
// <state_dir>/captures. The daemon reads that directory (on the thread pool) and owns the
// TLS key log.
//
//   packetcapture {action:"status"} → {dir, default_filter, default_ports, keep, max_size,
//                   duration, min_free, keylog:{enabled, domains, path, bytes},
//                   capture:{...DIR/capture.status...} | null}
//                   capture.running is false when the helper is gone (its pid has exited)
//   packetcapture {action:"list"}   → the same fields plus captures:[{file, path, bytes,
//                   modified}] (oldest first)
//   error bad_args for another action.
//
// The key log: while a domain is under domaindebug (and only then), the secrets of esad's
// TLS sessions to it are appended to <state_dir>/captures/tls_keylog.current (0640, the NSS
// key log format Wireshark reads). KeyLog owns that file.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "common/config.h"
#include "daemon/control/control_server.h"
#include "daemon/logs/domain_debug.h"
#include "daemon/logs/log_file.h"
#include "daemon/tls/tls_engine.h"

namespace esad::control {

// <state_dir>/captures
std::string capture_dir(const Config& config);
// "tcp port 25 or tcp port 2525": SMTP traffic (25, [delivery] port, the listener's port).
std::string default_capture_filter(const Config& config);

class KeyLog {
  public:
    // Creates the captures directory (2770) and the key log file (0640). nullptr and *error
    // when either cannot be created.
    static std::unique_ptr<KeyLog> open(const std::string& dir, std::string* error);
    ~KeyLog();
    void write(const char* line);  // one key log line (no newline); async file I/O
    const std::string& path() const { return path_; }

  private:
    std::shared_ptr<spdlog::logger> logger_;
    std::string path_;
};

struct CaptureCommandsEnv {
    uv_loop_t* loop = nullptr;
    const Config* config = nullptr;
    logs::DomainDebug* domain_debug = nullptr;  // null: no key log
    KeyLog* keylog = nullptr;                   // null: no key log
};

void register_capture_commands(ControlServer& server, CaptureCommandsEnv env);

// The sink the delivery code gives a TLS session to `domain`: empty unless the domain is
// under domaindebug and a key log is open.
tls::Engine::KeylogSink keylog_sink_for(const CaptureCommandsEnv& env, const std::string& domain);

}  // namespace esad::control
