// Owned libuv handles (STYLE.md §6). The only place esad touches uv handle lifetimes.
//
// Every wrapper is heap-allocated and owned by exactly one HandlePtr. Destroying the
// HandlePtr (or calling close()) starts uv_close(); the wrapper's memory is freed only in
// the close callback, on a later loop iteration, so an object is never destroyed on its own
// callback's stack. State: kActive → kClosing → (deleted). Callbacks stop firing once
// close() was called. Shutdown runs the loop until every close completed, after which
// uv_loop_close() returns 0.
//
// Failures reach the owner at once: a write that fails (peer reset, broken pipe) is reported
// through the stream's read callback as n < 0 (the uv error), once, and reading stops, so
// the owner does not learn of it only at its next timeout. The owner closes the stream (a
// stream never closes itself under its owner: the owner's HandlePtr would dangle); one
// handed over with close_after_writes() closes when its queue is done, failed or not. Handle
// initialisation that libuv documents as infallible (timer, TCP, pipe) aborts loudly if it ever
// fails; a signal handle that cannot be set up returns null with the reason (signals are
// installed at startup, which then fails with that reason).
//
//   auto t = loop::Timer::create(loop, [] { ... });  t->start(1000, 1000);
//   auto s = loop::Signal::create(loop, SIGTERM, [] { ... }, &error);  if (!s) ...
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

namespace esad::loop {

class HandleBase {
  public:
    enum class State { kActive, kClosing };
    HandleBase(const HandleBase&) = delete;
    HandleBase& operator=(const HandleBase&) = delete;

    // Idempotent. After this no callback of the handle runs; memory goes in the close cb.
    void close();
    bool closing() const { return state_ == State::kClosing; }
    // Live wrappers in this process: tests assert it returns to zero.
    static long live_count();

  protected:
    HandleBase();
    virtual ~HandleBase();
    virtual uv_handle_t* raw_handle() = 0;
    // Hook for subclasses that must drop callbacks/buffers before the handle is closed.
    virtual void on_close_started() {}

  private:
    static void on_closed(uv_handle_t* h);
    State state_ = State::kActive;
};

struct HandleCloser {
    void operator()(HandleBase* h) const { h->close(); }
};
template <typename T>
using HandlePtr = std::unique_ptr<T, HandleCloser>;

class Timer final : public HandleBase {
  public:
    using Callback = std::function<void()>;
    static HandlePtr<Timer> create(uv_loop_t* loop, Callback cb);
    void start(uint64_t timeout_ms, uint64_t repeat_ms = 0);
    void stop();
    // Don't keep the loop alive just for this timer.
    void unref() { uv_unref(raw_handle()); }

  private:
    Timer(uv_loop_t* loop, Callback cb);
    uv_handle_t* raw_handle() override { return reinterpret_cast<uv_handle_t*>(&timer_); }
    void on_close_started() override { cb_ = nullptr; }
    static void on_timer(uv_timer_t* t);
    uv_timer_t timer_;
    Callback cb_;
};

class Signal final : public HandleBase {
  public:
    using Callback = std::function<void(int signum)>;
    // Null (and *error set) when libuv cannot watch `signum`.
    [[nodiscard]] static HandlePtr<Signal> create(uv_loop_t* loop, int signum, Callback cb,
                                                  std::string* error);

  private:
    explicit Signal(Callback cb);
    uv_handle_t* raw_handle() override { return reinterpret_cast<uv_handle_t*>(&signal_); }
    void on_close_started() override { cb_ = nullptr; }
    static void on_signal(uv_signal_t* s, int signum);
    uv_signal_t signal_;
    Callback cb_;
};

// A connected or listening stream (uv_pipe_t or uv_tcp_t) with a write queue.
class Stream : public HandleBase {
  public:
    // n < 0: EOF, a read error or a failed write (the uv error code): close the stream.
    using ReadCallback = std::function<void(const char* data, ssize_t n)>;
    using ConnectionCallback = std::function<void(int status)>;
    // Reads go through one buffer of this size per loop thread (on_alloc), never one per
    // stream: a read callback must consume its bytes before it returns.
    static constexpr size_t kReadBufferSize = 64 * 1024;

    uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(raw_handle()); }
    int fileno() const;
    // Hands the bytes to the kernel, at once when nothing is queued and no `done` is given
    // (then no request is made), else through the write queue. `done` runs, from the loop
    // and never inside write(), when the kernel took them (not when the write failed or the
    // handle closed first). A write refused at once returns its error; either way a failure
    // is reported through the read callback (from the next loop iteration at the earliest),
    // and later writes return the same error.
    int write(std::string data, std::function<void()> done = nullptr);
    size_t write_queue_size() const { return pending_write_bytes_; }
    // The first write error (a uv error code), 0 while every write succeeded: tells a failed
    // write from a read error when the read callback reports n < 0.
    int write_error() const { return failed_; }
    int read_start(ReadCallback cb);
    void read_stop();
    int listen(int backlog, ConnectionCallback cb);
    // Closes once every queued write was handed to the kernel (a peer that never reads
    // keeps it open: close_draining_streams() ends such waits at shutdown). The owner has
    // let go: no callback of the stream runs after this.
    void close_after_writes();

  protected:
    void on_close_started() override;

  private:
    static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
    static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
    static void on_connection(uv_stream_t* s, int status);
    static void on_write(uv_write_t* req, int status);
    void fail_soon(int status);
    void report_failure(int status);
    ReadCallback read_cb_;
    ConnectionCallback conn_cb_;
    size_t pending_write_bytes_ = 0;
    size_t pending_writes_ = 0;
    bool close_when_drained_ = false;
    int failed_ = 0;           // the first write error; later writes return it
    HandlePtr<Timer> report_;  // reports a write libuv refused at once
};

class Pipe final : public Stream {
  public:
    static HandlePtr<Pipe> create(uv_loop_t* loop);

  private:
    explicit Pipe(uv_loop_t* loop);
    uv_handle_t* raw_handle() override { return reinterpret_cast<uv_handle_t*>(&pipe_); }
    uv_pipe_t pipe_;
};

class Tcp final : public Stream {
  public:
    static HandlePtr<Tcp> create(uv_loop_t* loop);
    uv_tcp_t* tcp() { return &tcp_; }

  private:
    explicit Tcp(uv_loop_t* loop);
    uv_handle_t* raw_handle() override { return reinterpret_cast<uv_handle_t*>(&tcp_); }
    uv_tcp_t tcp_;
};

// Closes now, dropping their unsent bytes, the streams of `loop` still waiting in
// close_after_writes() (shutdown deadline: a peer that does not read must not hold the
// process). Returns how many were closed.
size_t close_draining_streams(uv_loop_t* loop);
// Runs the loop until every handle closed; returns uv_loop_close()'s result (0 when clean).
int drain_and_close(uv_loop_t* loop);

}  // namespace esad::loop
