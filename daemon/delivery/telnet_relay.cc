// See telnet_relay.h.
#include "daemon/delivery/telnet_relay.h"

#include <cctype>

#include "daemon/loop/tcp_connect.h"

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
    // No callbacks from here: the owner is going away. The handles close themselves.
    closed_ = true;
    timer_.reset();
    tcp_.reset();
}

void TelnetRelay::start() {
    std::weak_ptr<TelnetRelay> weak = weak_from_this();
    timer_ = loop::Timer::create(loop_, [weak] {
        if (auto self = weak.lock()) self->on_timer();
    });
    try_next();
}

void TelnetRelay::try_next() {
    while (!closed_) {
        if (index_ >= ips_.size()) {
            finish("Unable to connect to remote host: " +
                   (last_error_.empty() ? std::string("no address") : last_error_));
            return;
        }
        const std::string ip = ips_[index_++];
        if (cb_.on_trying) cb_.on_trying(ip);
        if (closed_) return;
        tcp_ = loop::Tcp::create(loop_);
        std::weak_ptr<TelnetRelay> weak = weak_from_this();
        size_t attempt = index_;
        std::string error;
        bool started = loop::tcp_connect(
            *tcp_, ip, port_, source_,
            [weak, attempt](int status) {
                auto self = weak.lock();
                if (self && self->index_ == attempt) self->on_connect(status);
            },
            &error);
        if (started) {
            timer_->start(limits_.connect_ms);
            return;
        }
        tcp_.reset();
        last_error_ = capitalized(error);
        if (cb_.on_connect_failed) cb_.on_connect_failed(ip, last_error_);
    }
}

void TelnetRelay::on_connect(int status) {
    if (closed_ || connected_ || status == UV_ECANCELED) return;
    auto self = shared_from_this();
    const std::string& ip = ips_[index_ - 1];
    if (status != 0) {
        tcp_.reset();
        last_error_ = capitalized(uv_strerror(status));
        if (cb_.on_connect_failed) cb_.on_connect_failed(ip, last_error_);
        try_next();
        return;
    }
    connected_ = true;
    std::weak_ptr<TelnetRelay> weak = weak_from_this();
    tcp_->read_start([weak](const char* data, ssize_t n) {
        if (auto s = weak.lock()) s->on_read(data, n);
    });
    arm_idle();
    if (cb_.on_connected) cb_.on_connected(ip, loop::local_address(*tcp_));
}

void TelnetRelay::on_read(const char* data, ssize_t n) {
    if (closed_) return;
    auto self = shared_from_this();
    if (n < 0) {
        finish(n == UV_EOF ? "Connection closed by foreign host."
                           : "Connection closed: " + capitalized(uv_strerror(static_cast<int>(n))));
        return;
    }
    received_ += static_cast<uint64_t>(n);
    buffer_.append(data, static_cast<size_t>(n));
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
    sent_ += line.size() + 2;
    std::string bytes(line);
    bytes += "\r\n";
    tcp_->write(std::move(bytes));
    arm_idle();
    return true;
}

void TelnetRelay::close(const std::string& reason) {
    finish(reason);
}

void TelnetRelay::on_timer() {
    if (closed_) return;
    auto self = shared_from_this();
    if (connected_) {
        finish("Connection closed: idle for " + std::to_string(limits_.idle_ms / 1000) + " s");
        return;
    }
    tcp_.reset();  // the pending connect completes with UV_ECANCELED, ignored
    last_error_ = "Connection timed out";
    if (cb_.on_connect_failed) cb_.on_connect_failed(ips_[index_ - 1], last_error_);
    try_next();
}

void TelnetRelay::arm_idle() {
    if (timer_) timer_->start(limits_.idle_ms);
}

void TelnetRelay::finish(const std::string& reason) {
    if (closed_) return;
    closed_ = true;
    timer_.reset();
    if (tcp_) {
        // Let a last line the operator sent reach the peer before the close.
        loop::Tcp* raw = tcp_.release();
        raw->close_after_writes();
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
