// See cidr.h for the contract.
#include "common/cidr.h"

#include <arpa/inet.h>

#include <cstring>

namespace esad {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

struct ParsedIp {
    bool v4 = true;
    std::array<std::uint8_t, 16> bytes{};
};

std::optional<ParsedIp> parse_ip(std::string_view text) {
    // inet_pton needs a NUL-terminated string; the longest textual IPv6 address is 45 chars.
    char buf[64];
    if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    ParsedIp ip;
    if (inet_pton(AF_INET, buf, ip.bytes.data()) == 1) {
        ip.v4 = true;
        return ip;
    }
    if (inet_pton(AF_INET6, buf, ip.bytes.data()) == 1) {
        ip.v4 = false;
        return ip;
    }
    return std::nullopt;
}

bool is_v4_mapped(const std::array<std::uint8_t, 16>& b) {
    static constexpr std::uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(b.data(), kPrefix, sizeof kPrefix) == 0;
}

bool prefix_equal(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                  int prefix) {
    const int full = prefix / 8;
    if (std::memcmp(a.data(), b.data(), static_cast<std::size_t>(full)) != 0) return false;
    const int rest = prefix % 8;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[static_cast<std::size_t>(full)] & mask) == (b[static_cast<std::size_t>(full)] & mask);
}

}  // namespace

std::optional<Cidr> Cidr::parse(std::string_view text) {
    text = trim(text);
    std::string_view addr = text;
    std::optional<int> prefix;
    if (const auto slash = text.find('/'); slash != std::string_view::npos) {
        addr = text.substr(0, slash);
        const std::string_view digits = text.substr(slash + 1);
        if (digits.empty() || digits.size() > 3) return std::nullopt;
        int p = 0;
        for (char c : digits) {
            if (c < '0' || c > '9') return std::nullopt;
            p = p * 10 + (c - '0');
        }
        prefix = p;
    }
    const auto ip = parse_ip(addr);
    if (!ip) return std::nullopt;
    const int max = ip->v4 ? 32 : 128;
    if (prefix && *prefix > max) return std::nullopt;
    Cidr c;
    c.v4_ = ip->v4;
    c.prefix_ = prefix.value_or(max);
    // Mask host bits so that "10.1.2.3/8" is the network 10.0.0.0/8.
    c.net_ = ip->bytes;
    for (int bit = c.prefix_; bit < max; ++bit) {
        c.net_[static_cast<std::size_t>(bit / 8)] &=
            static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
    }
    return c;
}

bool Cidr::matches(bool v4, const std::array<std::uint8_t, 16>& addr) const {
    if (v4 == v4_) return prefix_equal(net_, addr, prefix_);
    if (v4_ && !v4) {
        // IPv4 network, IPv6 address: only an IPv4-mapped address can match.
        if (!is_v4_mapped(addr)) return false;
        std::array<std::uint8_t, 16> inner{};
        std::memcpy(inner.data(), addr.data() + 12, 4);
        return prefix_equal(net_, inner, prefix_);
    }
    // IPv6 network, IPv4 address: compare as ::ffff:a.b.c.d.
    std::array<std::uint8_t, 16> mapped{};
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    std::memcpy(mapped.data() + 12, addr.data(), 4);
    return prefix_equal(net_, mapped, prefix_);
}

bool Cidr::contains(std::string_view ip_text) const {
    const auto ip = parse_ip(trim(ip_text));
    return ip && matches(ip->v4, ip->bytes);
}

std::string Cidr::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(v4_ ? AF_INET : AF_INET6, net_.data(), buf, sizeof buf) == nullptr) return "?";
    return std::string(buf) + "/" + std::to_string(prefix_);
}

std::optional<CidrList> CidrList::parse(const std::vector<std::string>& entries,
                                        std::string* error) {
    CidrList list;
    for (const auto& e : entries) {
        if (!list.add(e)) {
            if (error) *error = "invalid network address '" + e + "'";
            return std::nullopt;
        }
    }
    return list;
}

bool CidrList::add(std::string_view text) {
    auto c = Cidr::parse(text);
    if (!c) return false;
    entries_.push_back(*c);
    return true;
}

bool CidrList::contains(const std::string& ip_text) const {
    const auto ip = parse_ip(trim(ip_text));
    if (!ip) return false;
    for (const auto& c : entries_) {
        if (c.matches(ip->v4, ip->bytes)) return true;
    }
    return false;
}

}  // namespace esad
