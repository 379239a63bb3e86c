// The esad control protocol, version 1 (DESIGN.md §6), compiled into esad and esactl.
//
// Transport: a Unix stream socket carrying newline-delimited JSON, one object per line.
//   request  {"v":1,"id":N,"cmd":"status","args":{...}}
//   reply    {"v":1,"id":N,"ok":true,"data":{...}}
//            {"v":1,"id":N,"ok":false,"error":{"code":"not_found","message":"..."}}
//   stream   several {"v":1,"id":N,"ok":true,"data":{...}} lines, then {"v":1,"id":N,"end":true}
// Limits: a line is at most kMaxLineBytes (newline excluded), nests at most kMaxDepth
// arrays/objects, and must be valid UTF-8. Violations are answered with an error reply
// whose id is null when the id could not be read. Error codes are part of the contract:
// bad_request, too_large, unsupported_version, unknown_command, bad_args, not_found,
// forbidden, unavailable, internal.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace esad::control {

inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxLineBytes = 1024 * 1024;
inline constexpr int kMaxDepth = 32;

struct Request {
    int64_t id = 0;
    std::string cmd;
    nlohmann::json args = nlohmann::json::object();
};

struct ProtocolError {
    std::string code;
    std::string message;
    std::optional<int64_t> id;  // echoed when the request carried a readable id
};

struct ParsedRequest {
    std::optional<Request> request;
    ProtocolError error;
    bool ok() const { return request.has_value(); }
};

// Validates and decodes one request line (without its newline).
ParsedRequest parse_request(std::string_view line);

std::string encode_request(const Request& request);
std::string encode_ok(int64_t id, const nlohmann::json& data);
std::string encode_error(std::optional<int64_t> id, const std::string& code,
                         const std::string& message);
std::string encode_end(int64_t id);

struct Reply {
    int64_t id = 0;
    bool ok = false;
    bool end = false;  // the final line of a stream
    nlohmann::json data;
    std::string error_code;
    std::string error_message;
};

// Decodes one reply line; nullopt when the line is not a protocol-v1 reply.
std::optional<Reply> parse_reply(std::string_view line);

bool valid_utf8(std::string_view text);
// Depth of array/object nesting, counted outside strings; stops counting past `limit`.
int json_depth(std::string_view text, int limit);

// Splits a byte stream into lines. A line longer than the cap puts the framer into the
// overflow state: the caller answers too_large and drops the connection.
class LineFramer {
  public:
    explicit LineFramer(size_t max_line = kMaxLineBytes) : max_line_(max_line) {}
    void append(std::string_view bytes) { buffer_.append(bytes); }
    // Next complete line (newline stripped, one trailing CR tolerated), if any.
    std::optional<std::string> next_line();
    bool overflowed() const { return overflowed_; }

  private:
    std::string buffer_;
    size_t scan_from_ = 0;
    size_t max_line_;
    bool overflowed_ = false;
};

}  // namespace esad::control
