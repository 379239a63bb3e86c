// IPv4/IPv6 network lists, e.g. the listener's `relay_from`.
//
// API:
//   Cidr::parse("127.0.0.0/8"), Cidr::parse("::1/128"), Cidr::parse("10.1.2.3")
//       A bare address is a host prefix (/32 or /128). Host bits below the prefix are
//       masked off ("10.1.2.3/8" == "10.0.0.0/8", as Postfix mynetworks does). Leading and
//       trailing blanks are ignored. Zone ids ("fe80::1%eth0") and anything inet_pton
//       refuses are errors.
//   Cidr::contains(ip_text), CidrList::contains(ip_text)
//       ip_text is a literal address as a socket reports it. An IPv4-mapped IPv6 address
//       ("::ffff:127.0.0.1", from a dual-stack socket) also matches IPv4 networks, and an
//       IPv4 address also matches "::ffff:0:0/96"-style IPv6 networks. Unparsable text
//       matches nothing.
//   CidrList::parse(entries, &error) parses all entries or fails naming the first bad one.
// Pure apart from inet_pton; no allocation on contains().
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace esad {

class Cidr {
  public:
    static std::optional<Cidr> parse(std::string_view text);

    bool contains(std::string_view ip_text) const;
    bool is_v4() const { return v4_; }
    int prefix() const { return prefix_; }
    // Canonical text, e.g. "10.0.0.0/8", "2001:db8::/32".
    std::string to_string() const;

  private:
    friend class CidrList;
    // Both families use 16 bytes; IPv4 networks use the first 4.
    bool matches(bool v4, const std::array<std::uint8_t, 16>& addr) const;

    bool v4_ = true;
    int prefix_ = 0;
    std::array<std::uint8_t, 16> net_{};
};

class CidrList {
  public:
    CidrList() = default;
    static std::optional<CidrList> parse(const std::vector<std::string>& entries,
                                         std::string* error);

    // Returns false (and leaves the list unchanged) when `text` is not a valid network.
    bool add(std::string_view text);
    bool contains(const std::string& ip_text) const;
    bool empty() const { return entries_.empty(); }
    std::size_t size() const { return entries_.size(); }

  private:
    std::vector<Cidr> entries_;
};

}  // namespace esad
