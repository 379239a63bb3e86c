// Outbound DATA encoding (RFC 5321 §4.1.1.4, §4.5.2): the delivery client turns stored
// message content into the octets sent after "354".
//
// API:
//   DotEncoder enc;
//   enc.encode(chunk, out);   // appends the encoded form of `chunk` to `out`; call for each
//                             // piece of the content, any split is fine (state carries over)
//   enc.finish(out);          // appends CRLF if the content did not end with a line end,
//                             // then ".\r\n"; the encoder is then reset for reuse
//   dot_encode(content) -> std::string      one-shot: encode + finish
//
// Rules:
//   * CRLF stays CRLF; a bare LF and a bare CR each become CRLF, so we never emit a bare CR
//     or LF (REQ-5321-01, SMTP smuggling: a stored "\n.\n" cannot end DATA early).
//   * A line that starts with "." gets one more "." (dot-stuffing, REQ-5321-04).
//   * Content that does not end in a line end gets one CRLF before the final dot, and no
//     extra CRLF otherwise (REQ-5321-03). Empty content encodes as ".\r\n".
//   * No line sent is longer than max_line octets (default kMaxSmtpLine = 998, RFC 5321
//     §4.5.3.1.6; the transparency dot does not count). The listener accepts longer lines
//     (mail relayed by Postfix or Exim has them); a longer line is folded by inserting
//     CRLF SPACE, as Postfix's smtp_line_length_limit does: a header stays one (folded)
//     header, and a MIME body part loses the least.
// Pure.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace esad::smtp {

inline constexpr std::size_t kMaxSmtpLine = 998;

class DotEncoder {
  public:
    explicit DotEncoder(std::size_t max_line = kMaxSmtpLine) : max_line_(max_line) {}
    void encode(std::string_view chunk, std::string& out);
    void finish(std::string& out);
    void reset();

  private:
    std::size_t max_line_;
    std::size_t column_ = 0;  // octets of the current output line, stuffing dot excluded
    bool line_start_ = true;  // the next octet starts a line
    bool after_cr_ = false;   // the last input octet was a CR (already emitted as CRLF)
};

std::string dot_encode(std::string_view content);

}  // namespace esad::smtp
