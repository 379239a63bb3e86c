// See content_stream.h.
#include "daemon/delivery/content_stream.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "daemon/loop/work.h"

namespace esad::delivery {
namespace {

// Moves a corrupt message aside, on the worker (rename + fsyncs), and says where to.
std::string quarantine(spool::Store* store, spool::Mid mid) {
    std::string moved_to;
    spool::IoStatus st = store->quarantine(mid, &moved_to);
    return st.ok() ? moved_to : std::string();
}

void log_corrupt(spool::Mid mid, const std::string& moved_to, const std::string& reason) {
    if (!moved_to.empty())
        spdlog::error("spool: MID {} corrupt at delivery, moved to corrupt/{}: {}", mid, moved_to,
                      reason);
    else
        spdlog::error("spool: MID {} corrupt at delivery, not moved aside: {}", mid, reason);
}

}  // namespace

void ContentStream::open(Env env, spool::Mid mid, Opened done) {
    auto stream = std::make_shared<ContentStream>(env, mid);
    if (env.recent && env.soon) {
        if (auto message = env.recent->get(mid)) {
            stream->memory_ = std::move(message);
            stream->size_ = stream->memory_->content.size();
            env.soon->post(
                [stream, done = std::move(done)] { done(stream, spool::LoadStatus::kOk, ""); });
            return;
        }
    }
    struct Result {
        spool::LoadStatus status = spool::LoadStatus::kIoError;
        std::string reason;
        std::string moved_to;
    };
    auto result = std::make_shared<Result>();
    loop::queue_work(
        env.loop,
        [stream, result] {
            spool::MessageRange range;
            result->status = stream->env_.store->open_message(stream->mid_, range, result->reason);
            if (result->status == spool::LoadStatus::kOk)
                result->status =
                    stream->reader_.open(std::move(range), stream->mid_, result->reason);
            if (result->status == spool::LoadStatus::kCorrupt)
                result->moved_to = quarantine(stream->env_.store, stream->mid_);
        },
        [stream, result, done = std::move(done)] {
            if (result->status != spool::LoadStatus::kOk) {
                if (result->status == spool::LoadStatus::kCorrupt)
                    log_corrupt(stream->mid_, result->moved_to, result->reason);
                done(nullptr, result->status, result->reason);
                return;
            }
            stream->size_ = stream->reader_.content_size();
            done(stream, spool::LoadStatus::kOk, "");
        });
}

ContentStream::~ContentStream() {
    drop();
}

void ContentStream::release_budget() {
    if (ticket_ != 0) env_.budget->cancel(ticket_);
    ticket_ = 0;
    granted_ = false;
    if (held_ != 0) env_.budget->release(held_);
    held_ = 0;
}

void ContentStream::drop() {
    if (dropped_) return;
    dropped_ = true;
    ++seq_;
    release_budget();
    request_ = Request{};
}

void ContentStream::next(std::uint64_t offset, std::size_t max, PieceDone done) {
    Request r;
    r.offset = offset;
    r.max = max;
    r.done = std::move(done);
    // A piece counts twice: the octets read and their dot-stuffed copy being written live
    // side by side until the FSM has encoded them (and completed reads can queue up).
    begin(std::move(r), 2 * static_cast<std::uint64_t>(max));
}

void ContentStream::whole(WholeDone done) {
    Request r;
    r.whole = true;
    r.whole_done = std::move(done);
    begin(std::move(r), size_);
}

void ContentStream::begin(Request request, std::uint64_t bytes) {
    if (dropped_) return;
    release_budget();  // the previous piece was written (or is abandoned)
    request.seq = ++seq_;
    request_ = std::move(request);
    const std::uint64_t seq = request_.seq;
    std::weak_ptr<ContentStream> weak = weak_from_this();
    ticket_ = env_.budget->acquire(bytes, [weak, seq](std::uint64_t granted) {
        auto self = weak.lock();
        if (!self || self->dropped_ || self->seq_ != seq) return;  // cannot happen: cancelled
        self->ticket_ = 0;
        self->held_ = granted;
        self->granted_ = true;
        if (!self->worker_busy_) self->start_read();
    });
}

void ContentStream::start_read() {
    granted_ = false;
    worker_busy_ = true;
    auto self = shared_from_this();
    auto request = std::make_shared<Request>();
    request->seq = request_.seq;
    request->offset = request_.offset;
    request->max = request_.max;
    request->whole = request_.whole;
    auto piece = std::make_shared<Piece>();
    if (memory_) {
        read_from_memory(*request, *piece);
        env_.soon->post([self, request, piece] { self->complete(*request, *piece, ""); });
        return;
    }
    auto moved_to = std::make_shared<std::string>();
    loop::queue_work(
        env_.loop,
        [self, request, piece, moved_to] { self->read_on_worker(*request, *piece, *moved_to); },
        [self, request, piece, moved_to] { self->complete(*request, *piece, *moved_to); });
}

void ContentStream::complete(const Request& request, Piece& piece, const std::string& moved_to) {
    worker_busy_ = false;
    if (!piece.ok && !moved_to.empty()) log_corrupt(mid_, moved_to, piece.reason);
    if (dropped_ || seq_ != request.seq) {
        // Superseded (a re-run asked again) or dropped: a granted newer request
        // waited for this job to finish.
        if (!dropped_ && granted_) start_read();
        return;
    }
    if (request.whole) {
        WholeDone done = std::move(request_.whole_done);
        if (!done) return;
        if (!piece.ok) return done(nullptr, piece.reason);
        if (memory_)  // no copy: the cached message outlives the caller's use
            return done(std::shared_ptr<const std::string>(memory_, &memory_->content), "");
        return done(std::make_shared<const std::string>(std::move(piece.data)), "");
    }
    PieceDone done = std::move(request_.done);
    if (done) done(std::move(piece));
}

void ContentStream::read_from_memory(const Request& request, Piece& out) const {
    const std::string& content = memory_->content;
    out.ok = true;
    if (request.whole) {
        out.last = true;  // complete() hands out the cached string itself
        return;
    }
    const std::uint64_t offset = std::min<std::uint64_t>(request.offset, content.size());
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(request.max, content.size() - offset));
    out.data.assign(content, static_cast<std::size_t>(offset), n);
    out.last = offset + n == content.size();
}

void ContentStream::read_on_worker(const Request& request, Piece& out, std::string& moved_to) {
    const std::uint64_t consumed = reader_.content_size() - reader_.remaining();
    if (request.whole || request.offset != consumed) {
        if (!request.whole && request.offset != 0) {
            out.reason = "content requested out of order";
            return;
        }
        reader_.rewind();
    }
    spool::LoadStatus st;
    if (request.whole) {
        std::string piece;
        out.data.reserve(static_cast<std::size_t>(reader_.content_size()));
        do {
            st = reader_.read(1 << 20, piece, out.last, out.reason);
            out.data.append(piece);
        } while (st == spool::LoadStatus::kOk && !out.last);
    } else {
        st = reader_.read(request.max, out.data, out.last, out.reason);
    }
    out.ok = st == spool::LoadStatus::kOk;
    if (!out.ok) {
        out.data.clear();
        if (st == spool::LoadStatus::kCorrupt) moved_to = quarantine(env_.store, mid_);
    }
}

}  // namespace esad::delivery
