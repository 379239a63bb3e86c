// See telnet_relay.h.
#include "daemon/delivery/telnet_relay.h"

#include <cctype>

namespace esad::delivery {

namespace {
// libuv says "connection refused"; telnet(1) and the appliance say "Connection refused".
std::string capitalized(std::string text) {
    if (!text.empty())
        text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
    return text;
}

// Delivers every complete line of `buffer` (and, with `all`, the rest) to `emit`, cutting
// lines at `max_line`; stops early when `emit` returns false. Consumed bytes are erased.
template <typename Emit>
void split_lines(std::string& buffer, size_t max_line, bool all, Emit emit) {
    size_t pos = 0;
    while (pos < buffer.size()) {
        size_t nl = buffer.find('\n', pos);
        size_t text_end = nl;  // the line without its CR LF / LF
        if (nl != std::string::npos && text_end > pos && buffer[text_end - 1] == '\r') --text_end;
        size_t end, next;
        if (nl != std::string::npos && text_end - pos <= max_line) {
            end = text_end;
            next = nl + 1;
        } else if (buffer.size() - pos >= max_line) {
            end = next = pos + max_line;
        } else if (all) {
            end = next = buffer.size();
        } else {
            break;
        }
        std::string_view line(buffer.data() + pos, end - pos);
        pos = next;
        if (!emit(line)) break;
    }
    buffer.erase(0, pos);
}
}  // namespace

TelnetRelay::TelnetRelay(uv_loop_t* loop, std::vector<std::string> ips, uint16_t port,
                         std::string source, TelnetLimits limits, Callbacks callbacks)
    : loop_(loop),
      ips_(std::move(ips)),
      port_(port),
      source_(std::move(source)),
      limits_(limits),
      cb_(std::move(callbacks)) {}

TelnetRelay::~TelnetRelay() {
    // No callbacks from here: the owner is going away. The connection closes itself.
    closed_ = true;
    conn_.reset();
}

void TelnetRelay::start() {
    try_next();
}

void TelnetRelay::try_next() {
    if (closed_) return;
    if (index_ >= ips_.size()) {
        finish("Unable to connect to remote host: " +
               (last_error_.empty() ? std::string("no address") : last_error_));
        return;
    }
    const std::string& ip = ips_[index_++];
    if (cb_.on_trying) cb_.on_trying(ip);
    if (closed_) return;
    conn_ = OutboundConnection::create(loop_, callbacks_for(shared_from_this()));
    conn_->connect(ip, port_, source_);
    conn_->set_deadline(uv_now(loop_) + limits_.connect_ms);
}

void TelnetRelay::on_connected(const std::string& local) {
    if (closed_) return;
    auto self = shared_from_this();
    connected_ = true;
    arm_idle();
    if (cb_.on_connected) cb_.on_connected(ips_[index_ - 1], local);
}

void TelnetRelay::on_failed(const OutboundConnection::Failure& failure) {
    if (closed_) return;
    auto self = shared_from_this();
    using Kind = OutboundConnection::Failure::Kind;
    conn_.reset();
    if (connected_) {
        switch (failure.kind) {
            case Kind::kEof:
                return finish("Connection closed by foreign host.");
            case Kind::kDeadline:
                return finish("Connection closed: idle for " +
                              std::to_string(limits_.idle_ms / 1000) + " s");
            default:
                return finish("Connection closed: " + capitalized(failure.detail));
        }
    }
    last_error_ = failure.kind == Kind::kDeadline ? std::string("Connection timed out")
                                                  : capitalized(failure.detail);
    if (cb_.on_connect_failed) cb_.on_connect_failed(ips_[index_ - 1], last_error_);
    try_next();
}

void TelnetRelay::on_data(std::string_view bytes) {
    if (closed_) return;
    auto self = shared_from_this();
    received_ += bytes.size();
    buffer_.append(bytes);
    if (received_ > limits_.max_received) {
        finish("Connection closed: more than " + std::to_string(limits_.max_received) +
               " octets received");
        return;
    }
    split_lines(buffer_, limits_.max_line, false, [this](std::string_view line) {
        if (cb_.on_line) cb_.on_line(line);
        return !closed_;
    });
    if (!closed_) arm_idle();
}

bool TelnetRelay::send_line(std::string_view line, std::string* error) {
    if (closed_ || !connected_) {
        *error = "not connected";
        return false;
    }
    if (line.find_first_of("\r\n") != std::string_view::npos) {
        *error = "a line cannot contain CR or LF";
        return false;
    }
    if (sent_ + line.size() + 2 > limits_.max_sent) {
        *error = "more than " + std::to_string(limits_.max_sent) + " octets sent in this session";
        return false;
    }
    std::string bytes(line);
    bytes += "\r\n";
    if (!conn_ || !conn_->write(std::move(bytes))) {
        *error = "not connected";
        return false;
    }
    sent_ += line.size() + 2;
    arm_idle();
    return true;
}

void TelnetRelay::close(const std::string& reason) {
    finish(reason);
}

void TelnetRelay::arm_idle() {
    if (conn_) conn_->set_deadline(uv_now(loop_) + limits_.idle_ms);
}

void TelnetRelay::finish(const std::string& reason) {
    if (closed_) return;
    closed_ = true;
    if (conn_) {
        conn_->close();  // a last line the operator sent still reaches the peer
        conn_.reset();
    }
    Callbacks cb = std::move(cb_);
    cb_ = {};
    if (connected_ && cb.on_line)
        split_lines(buffer_, limits_.max_line, true, [&cb](std::string_view line) {
            cb.on_line(line);
            return true;
        });
    buffer_.clear();
    if (cb.on_closed) cb.on_closed(reason);
}

}  // namespace esad::delivery
