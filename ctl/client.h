// esactl's side of the control protocol: one blocking Unix-socket connection per process.
//   Client c; if (!c.connect(path, timeout_s, &err)) ... ; auto reply = c.call("status", {});
// Every failure is reported as text for a one-line stderr message.
#pragma once

#include <optional>
#include <string>

#include "common/control_protocol.h"

namespace esad::ctl {

// Connects a blocking Unix stream socket to the control socket at `path`: the fd, or -1 and
// *error ("cannot connect to esad at PATH: errno text").
int connect_control_socket(const std::string& path, std::string* error);

class Client {
  public:
    ~Client();
    bool connect(const std::string& path, double timeout_s, std::string* error);
    // Sends one request and reads one reply line (the first line of a stream).
    std::optional<control::Reply> call(const std::string& cmd, const nlohmann::json& args,
                                       std::string* error);
    // Reads the next line of a stream; nullopt on error or timeout.
    std::optional<control::Reply> next(std::string* error);

  private:
    bool read_line(std::string* line, std::string* error);
    int fd_ = -1;
    double timeout_s_ = 10;
    int64_t next_id_ = 1;
    std::string buffer_;
};

}  // namespace esad::ctl
