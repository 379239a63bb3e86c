// See pcapng_writer.h.
#include "ctl/capture/pcapng_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace esad::capture {

namespace {
constexpr uint32_t kSectionHeader = 0x0A0D0D0A;
constexpr uint32_t kInterfaceDescription = 1;
constexpr uint32_t kEnhancedPacket = 6;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
constexpr uint16_t kOptEnd = 0;
constexpr uint16_t kOptComment = 1;
constexpr uint16_t kOptIfName = 2;
constexpr uint16_t kOptIfTsresol = 9;
constexpr uint16_t kOptShbUserAppl = 4;
constexpr size_t kFlushAt = 64 * 1024;

uint32_t padded(size_t n) {
    return static_cast<uint32_t>((n + 3) & ~size_t{3});
}
}  // namespace

PcapngWriter::PcapngWriter(int fd, int linktype, uint32_t snaplen, std::string if_name)
    : fd_(fd), linktype_(linktype), snaplen_(snaplen), if_name_(std::move(if_name)) {}

void PcapngWriter::put32(uint32_t v) {
    put_bytes(&v, 4);
}
void PcapngWriter::put16(uint16_t v) {
    put_bytes(&v, 2);
}
void PcapngWriter::put_bytes(const void* p, size_t n) {
    auto* c = static_cast<const unsigned char*>(p);
    buffer_.insert(buffer_.end(), c, c + n);
}
void PcapngWriter::pad4() {
    while (buffer_.size() % 4)
        buffer_.push_back(0);
}
void PcapngWriter::option(uint16_t code, const std::string& value) {
    put16(code);
    put16(static_cast<uint16_t>(value.size()));
    put_bytes(value.data(), value.size());
    pad4();
}

bool PcapngWriter::start() {
    // The buffer is empty here, so block lengths are offsets into it.
    std::string appl = "esad-capture";
    uint32_t shb_len = 28 + 4 + padded(appl.size()) + 4;
    put32(kSectionHeader);
    put32(shb_len);
    put32(kByteOrderMagic);
    put16(1);
    put16(0);
    put32(0xFFFFFFFF);  // section length unknown (-1)
    put32(0xFFFFFFFF);
    option(kOptShbUserAppl, appl);
    put16(kOptEnd);
    put16(0);
    put32(shb_len);

    std::string comment = "esad packet capture";
    uint32_t idb_len = 20 + 4 + padded(if_name_.size()) + 4 + 4 + 4 + padded(comment.size()) + 4;
    put32(kInterfaceDescription);
    put32(idb_len);
    put16(static_cast<uint16_t>(linktype_));
    put16(0);
    put32(snaplen_);
    option(kOptIfName, if_name_);
    option(kOptIfTsresol, std::string(1, '\x06'));
    option(kOptComment, comment);
    put16(kOptEnd);
    put16(0);
    put32(idb_len);
    return flush();
}

uint64_t PcapngWriter::packet_block_size(uint32_t caplen) {
    return 32ull + padded(caplen);
}

bool PcapngWriter::packet(uint64_t ts_sec, uint32_t ts_usec, const unsigned char* data,
                          uint32_t caplen, uint32_t len) {
    if (errno_) return false;
    uint64_t ts = ts_sec * 1000000ull + ts_usec;
    auto block = static_cast<uint32_t>(packet_block_size(caplen));
    put32(kEnhancedPacket);
    put32(block);
    put32(0);  // interface 0
    put32(static_cast<uint32_t>(ts >> 32));
    put32(static_cast<uint32_t>(ts & 0xFFFFFFFF));
    put32(caplen);
    put32(len);
    put_bytes(data, caplen);
    pad4();
    put32(block);
    return buffer_.size() < kFlushAt || flush();
}

bool PcapngWriter::flush() {
    if (errno_) return false;
    size_t off = 0;
    while (off < buffer_.size()) {
        ssize_t n = ::write(fd_, buffer_.data() + off, buffer_.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            errno_ = n < 0 ? errno : ENOSPC;
            // Keep the file a valid pcapng prefix: cut back to the last whole block.
            [[maybe_unused]] int rc = ftruncate(fd_, static_cast<off_t>(written_));
            buffer_.clear();
            return false;
        }
        off += static_cast<size_t>(n);
    }
    written_ += buffer_.size();
    buffer_.clear();
    return true;
}

}  // namespace esad::capture
