// See handle.h.
#include "daemon/loop/handle.h"

#include <atomic>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

namespace esad::loop {

namespace {
std::atomic<long> g_live{0};

// Streams waiting in close_after_writes(), for close_draining_streams(). Loop threads only
// touch it; the mutex keeps loops on different threads (tests, later shards) apart.
std::mutex g_draining_mu;
std::unordered_set<Stream*> g_draining;

struct WriteReq {
    uv_write_t req;
    std::string data;
    size_t queued;  // the bytes of `data` left for the queue (the kernel took the rest at once)
    Stream* owner;
    std::function<void()> done;
};

// libuv documents these initialisations as unable to fail; if one does, the handle is
// unusable and nothing sensible can follow (STYLE §12: broken invariants abort loudly).
void must_init(int rc, const char* what) {
    if (rc == 0) return;
    std::fprintf(stderr, "esad: %s failed: %s\n", what, uv_strerror(rc));
    std::abort();
}
}  // namespace

HandleBase::HandleBase() {
    ++g_live;
}
HandleBase::~HandleBase() {
    --g_live;
}
long HandleBase::live_count() {
    return g_live.load();
}

void HandleBase::close() {
    if (state_ == State::kClosing) return;
    state_ = State::kClosing;
    on_close_started();
    uv_handle_t* h = raw_handle();
    h->data = this;
    uv_close(h, &HandleBase::on_closed);
}

void HandleBase::on_closed(uv_handle_t* h) {
    delete static_cast<HandleBase*>(h->data);
}

// --- Timer ---------------------------------------------------------------------------------

Timer::Timer(uv_loop_t* loop, Callback cb) : cb_(std::move(cb)) {
    must_init(uv_timer_init(loop, &timer_), "uv_timer_init");
    timer_.data = this;
}

HandlePtr<Timer> Timer::create(uv_loop_t* loop, Callback cb) {
    return HandlePtr<Timer>(new Timer(loop, std::move(cb)));
}

void Timer::start(uint64_t timeout_ms, uint64_t repeat_ms) {
    if (closing()) return;
    uv_timer_start(&timer_, &Timer::on_timer, timeout_ms, repeat_ms);
}

void Timer::stop() {
    if (!closing()) uv_timer_stop(&timer_);
}

void Timer::on_timer(uv_timer_t* t) {
    auto* self = static_cast<Timer*>(t->data);
    if (self->closing() || !self->cb_) return;
    // Copy: the callback may destroy the owner, which closes (not deletes) this timer.
    Callback cb = self->cb_;
    cb();
}

// --- Signal --------------------------------------------------------------------------------

Signal::Signal(Callback cb) : cb_(std::move(cb)) {}

HandlePtr<Signal> Signal::create(uv_loop_t* loop, int signum, Callback cb, std::string* error) {
    auto* s = new Signal(std::move(cb));
    int rc = uv_signal_init(loop, &s->signal_);
    if (rc != 0) {
        delete s;  // never initialised: nothing for uv_close to do
    } else {
        s->signal_.data = s;
        HandlePtr<Signal> owned(s);
        rc = uv_signal_start(&s->signal_, &Signal::on_signal, signum);
        if (rc == 0) return owned;
    }
    *error = "cannot watch signal ";
    *error += std::to_string(signum);
    *error += ": ";
    *error += uv_strerror(rc);
    return nullptr;
}

void Signal::on_signal(uv_signal_t* s, int signum) {
    auto* self = static_cast<Signal*>(s->data);
    if (self->closing() || !self->cb_) return;
    Callback cb = self->cb_;
    cb(signum);
}

// --- Stream --------------------------------------------------------------------------------

int Stream::fileno() const {
    uv_os_fd_t fd = -1;
    uv_fileno(const_cast<Stream*>(this)->raw_handle(), &fd);
    return fd;
}

int Stream::write(std::string data, std::function<void()> done) {
    if (closing()) return UV_EPIPE;
    if (failed_ != 0) return failed_;
    if (data.empty()) return 0;
    size_t taken = 0;
    if (!done && pending_writes_ == 0) {
        // Nothing queued: offer the bytes to the kernel now. A write that goes through
        // libuv's queue costs a request, a callback and, when the queue drains, an
        // epoll_ctl; a reply or a command almost always fits the socket buffer whole.
        uv_buf_t buf = uv_buf_init(data.data(), static_cast<unsigned>(data.size()));
        int n = uv_try_write(stream(), &buf, 1);
        if (n == static_cast<int>(data.size())) return 0;
        if (n < 0 && n != UV_EAGAIN) {
            fail_soon(n);
            return n;
        }
        if (n > 0) taken = static_cast<size_t>(n);
    }
    auto* w = new WriteReq{{}, std::move(data), 0, this, std::move(done)};
    w->req.data = w;
    w->queued = w->data.size() - taken;
    uv_buf_t buf = uv_buf_init(w->data.data() + taken, static_cast<unsigned>(w->queued));
    pending_write_bytes_ += w->queued;
    ++pending_writes_;
    int rc = uv_write(&w->req, stream(), &buf, 1, &Stream::on_write);
    if (rc != 0) {
        pending_write_bytes_ -= w->queued;
        --pending_writes_;
        delete w;
        fail_soon(rc);
    }
    return rc;
}

void Stream::fail_soon(int status) {
    // Reported from the next loop iteration, not from inside the owner's own write() call:
    // the owner's callback may then safely tear the connection down.
    failed_ = status;
    read_stop();
    report_ = Timer::create(uv_handle_get_loop(raw_handle()), [this] {
        if (closing()) return;
        if (read_cb_) {
            ReadCallback cb = read_cb_;
            cb(nullptr, failed_);
        }
        if (!closing() && close_when_drained_) close();
    });
    report_->start(0);
}

void Stream::report_failure(int status) {
    // Once: the rest of a failed queue fails the same way. The stream is not closed here:
    // its owner still holds it and closes it (a handle freed under its owner would dangle).
    if (failed_ != 0) return;
    failed_ = status;
    read_stop();
    if (!read_cb_) return;
    ReadCallback cb = read_cb_;
    cb(nullptr, status);
}

void Stream::on_write(uv_write_t* req, int status) {
    auto* w = static_cast<WriteReq*>(req->data);
    Stream* self = w->owner;
    // uv_close() cancels pending writes before the close callback, so `self` is alive here.
    self->pending_write_bytes_ -= w->queued;
    --self->pending_writes_;
    std::function<void()> done = std::move(w->done);
    delete w;
    // The owner hears of a failed write now, as it would of a read error (UV_ECANCELED: the
    // stream is closing, nobody to tell).
    if (status != 0 && status != UV_ECANCELED && !self->closing()) self->report_failure(status);
    if (self->close_when_drained_ && self->pending_writes_ == 0) self->close();
    if (status == 0 && done && !self->closing()) done();
}

void Stream::close_after_writes() {
    if (pending_writes_ == 0) {
        close();
        return;
    }
    close_when_drained_ = true;
    read_stop();
    read_cb_ = nullptr;  // the owner let go: a late write error is not its business
    std::lock_guard<std::mutex> lock(g_draining_mu);
    g_draining.insert(this);
}

void Stream::on_close_started() {
    read_cb_ = nullptr;
    conn_cb_ = nullptr;
    report_.reset();
    if (close_when_drained_) {
        std::lock_guard<std::mutex> lock(g_draining_mu);
        g_draining.erase(this);
    }
}

size_t close_draining_streams(uv_loop_t* loop) {
    std::vector<Stream*> mine;
    {
        std::lock_guard<std::mutex> lock(g_draining_mu);
        for (Stream* s : g_draining)
            if (s->stream()->loop == loop) mine.push_back(s);
    }
    for (Stream* s : mine)
        s->close();  // on_close_started() takes it out of the set
    return mine.size();
}

// One read buffer per loop thread, shared by all its streams: libuv calls on_alloc right
// before the read(2) it is for and on_read right after, and every read callback consumes
// (copies or parses) its bytes before returning, so no two reads ever use it at once. A
// stream then costs no read memory of its own (10,000 streams no longer hold 640 MiB).
void Stream::on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
    thread_local std::unique_ptr<char[]> shared(new char[kReadBufferSize]);
    *buf = uv_buf_init(shared.get(), kReadBufferSize);
}

void Stream::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* self = static_cast<Stream*>(reinterpret_cast<uv_handle_t*>(s)->data);
    if (self->closing() || !self->read_cb_ || n == 0) return;
    ReadCallback cb = self->read_cb_;
    cb(buf->base, n);
}

int Stream::read_start(ReadCallback cb) {
    read_cb_ = std::move(cb);
    raw_handle()->data = this;
    return uv_read_start(stream(), &Stream::on_alloc, &Stream::on_read);
}

void Stream::read_stop() {
    if (!closing()) uv_read_stop(stream());
}

void Stream::on_connection(uv_stream_t* s, int status) {
    auto* self = static_cast<Stream*>(reinterpret_cast<uv_handle_t*>(s)->data);
    if (self->closing() || !self->conn_cb_) return;
    ConnectionCallback cb = self->conn_cb_;
    cb(status);
}

int Stream::listen(int backlog, ConnectionCallback cb) {
    conn_cb_ = std::move(cb);
    raw_handle()->data = this;
    return uv_listen(stream(), backlog, &Stream::on_connection);
}

// --- Pipe / Tcp ----------------------------------------------------------------------------

Pipe::Pipe(uv_loop_t* loop) {
    must_init(uv_pipe_init(loop, &pipe_, 0), "uv_pipe_init");
    pipe_.data = this;
}

HandlePtr<Pipe> Pipe::create(uv_loop_t* loop) {
    return HandlePtr<Pipe>(new Pipe(loop));
}

Tcp::Tcp(uv_loop_t* loop) {
    must_init(uv_tcp_init(loop, &tcp_), "uv_tcp_init");
    tcp_.data = this;
}

HandlePtr<Tcp> Tcp::create(uv_loop_t* loop) {
    return HandlePtr<Tcp>(new Tcp(loop));
}

int drain_and_close(uv_loop_t* loop) {
    // Close callbacks run on the next iterations; run until nothing is left.
    for (int i = 0; i < 1000 && uv_loop_alive(loop); ++i)
        uv_run(loop, UV_RUN_ONCE);
    return uv_loop_close(loop);
}

}  // namespace esad::loop
