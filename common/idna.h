// idna — internationalized domain names (IDNA2008 through libidn2) for the recipient host.
//
//   to_a_label("München.Example") -> "xn--mnchen-3ya.example"   (lower-case ASCII, the form
//                                    DNS, the queue key and tophosts/hoststatus use)
//   to_a_label("bad..name")       -> nullopt, *error = libidn2's reason
//   to_u_label("xn--mnchen-3ya.example") -> "münchen.example"  (for display; the input when
//                                    it holds no valid A-label)
//
// An ASCII name is only lower-cased (no library call). A U-label name is normalised (NFC)
// and converted with IDNA2008 non-transitional rules, as browsers and MTAs do today. Pure:
// no I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace esad {

std::optional<std::string> to_a_label(std::string_view domain, std::string* error = nullptr);
std::string to_u_label(std::string_view domain);

}  // namespace esad
