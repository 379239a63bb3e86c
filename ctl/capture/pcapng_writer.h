// A minimal pcapng writer (the IETF draft "PCAP Now Generic"): one Section Header Block, one
// Interface Description Block, then one Enhanced Packet Block per packet, in host byte order
// (the section's byte-order magic tells readers which). libpcap 1.10 only writes classic
// pcap, so esad-capture writes the blocks itself; tshark/Wireshark read them.
//
//   PcapngWriter w(fd, linktype, snaplen, "any");
//   if (!w.start()) ...                      // header blocks
//   w.packet(ts_sec, ts_usec, data, caplen, len)   // false on a write error (errno kept)
//   w.bytes()                                // file size so far
//   w.flush()
//
// Writes go through a small buffer; a failed write (ENOSPC, EIO) makes every later call
// fail too and leaves errno_value() set. Time stamps are in microseconds (if_tsresol 6).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace esad::capture {

class PcapngWriter {
  public:
    PcapngWriter(int fd, int linktype, uint32_t snaplen, std::string if_name);
    bool start();
    bool packet(uint64_t ts_sec, uint32_t ts_usec, const unsigned char* data, uint32_t caplen,
                uint32_t len);
    // The size an Enhanced Packet Block for `caplen` octets takes.
    static uint64_t packet_block_size(uint32_t caplen);
    bool flush();
    uint64_t bytes() const { return written_ + buffer_.size(); }
    int errno_value() const { return errno_; }

  private:
    void put32(uint32_t v);
    void put16(uint16_t v);
    void put_bytes(const void* p, size_t n);
    void pad4();
    void option(uint16_t code, const std::string& value);
    int fd_;
    int linktype_;
    uint32_t snaplen_;
    std::string if_name_;
    std::vector<unsigned char> buffer_;
    uint64_t written_ = 0;
    int errno_ = 0;
};

}  // namespace esad::capture
