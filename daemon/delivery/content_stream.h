// content_stream — owns one transaction's content on its way from the spool to a delivery
// session: the open spool file (spool::ContentReader), the content budget held by the
// piece in flight, and the quarantine of a file found corrupt (as a corrupt file found at
// load time always was). Opening and every read run on libuv workers: the loop never waits
// on the disk. A message still in the spool's recent cache (spool/recent_cache.h) is served
// from memory instead, with the same budget, and its answers still come on a later loop
// iteration (Env::soon), never inside the call. Loop thread only, except inside the worker
// jobs it queues itself.
//
//   ContentStream::open(env, mid, [](stream, status, reason) {...});  envelope + trailer
//   stream->next(offset, max, [](Piece p) {...});  the next piece; waits for budget first
//       (2 x max: the piece and its encoded copy).
//       The budget of the previous piece is released by the next call (its write is done:
//       the client FSM asks only then) or by drop(). offset 0 starts over (a re-run).
//   stream->whole([](content, reason) {...});      all of it (7-bit conversion), counted
//       against the budget: a message larger than the whole budget waits to have it all.
//   stream->drop();   the transaction is over: budget back, waits cancelled, reads ignored
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "daemon/delivery/content_budget.h"
#include "daemon/loop/soon.h"
#include "daemon/spool/content_reader.h"
#include "daemon/spool/recent_cache.h"

namespace esad::delivery {

class ContentStream : public std::enable_shared_from_this<ContentStream> {
  public:
    struct Env {
        uv_loop_t* loop = nullptr;
        spool::Store* store = nullptr;
        std::shared_ptr<ContentBudget> budget;  // shared: a stream may outlive its manager
        spool::RecentCache* recent = nullptr;   // optional: messages served from memory
        std::shared_ptr<loop::Soon> soon;       // required with `recent`
    };
    struct Piece {
        bool ok = false;
        std::string data;
        bool last = false;
        std::string reason;  // when !ok
    };
    using Opened = std::function<void(std::shared_ptr<ContentStream>, spool::LoadStatus,
                                      const std::string& reason)>;
    using PieceDone = std::function<void(Piece)>;
    using WholeDone =
        std::function<void(std::shared_ptr<const std::string> content, const std::string& reason)>;

    static void open(Env env, spool::Mid mid, Opened done);
    ContentStream(Env env, spool::Mid mid) : env_(env), mid_(mid) {}
    ~ContentStream();

    const spool::Envelope& envelope() const {
        return memory_ ? memory_->envelope : reader_.envelope();
    }
    bool from_memory() const { return memory_ != nullptr; }
    std::uint64_t content_size() const { return size_; }
    void next(std::uint64_t offset, std::size_t max, PieceDone done);
    void whole(WholeDone done);
    void drop();

  private:
    struct Request {
        std::uint64_t seq = 0;
        std::uint64_t offset = 0;
        std::size_t max = 0;
        bool whole = false;
        PieceDone done;
        WholeDone whole_done;
    };
    void begin(Request request, std::uint64_t bytes);
    void start_read();
    void release_budget();
    // Worker thread: reads what `request` asks into `out`; quarantines a corrupt file.
    void read_on_worker(const Request& request, Piece& out, std::string& moved_to);
    void read_from_memory(const Request& request, Piece& out) const;
    // Loop thread: hands a finished read to whoever asked for it.
    void complete(const Request& request, Piece& piece, const std::string& moved_to);

    Env env_;
    spool::Mid mid_;
    spool::ContentReader reader_;
    std::shared_ptr<const spool::Message> memory_;  // from the recent cache, else null
    std::uint64_t size_ = 0;
    Request request_;
    std::uint64_t seq_ = 0;
    std::uint64_t held_ = 0;  // budget granted to the current request
    ContentBudget::Ticket ticket_ = 0;
    bool granted_ = false;      // request_ has its budget, waits for the worker
    bool worker_busy_ = false;  // a job on reader_ runs
    bool dropped_ = false;
};

}  // namespace esad::delivery
