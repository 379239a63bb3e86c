// See committer.h.
#include "daemon/inject/committer.h"

#include <spdlog/spdlog.h>

#include "daemon/loop/work.h"

namespace esad::inject {

Committer::Committer(uv_loop_t* loop, spool::Spool& spool, uint64_t max_message_size)
    : loop_(loop),
      spool_(spool),
      max_message_size_(max_message_size),
      waiting_(std::make_unique<Batch>()),
      space_(std::make_shared<spool::SpaceCheck>()) {
    // Until the first refresh completes, trust the disk (start() runs one immediately).
    space_->ok = true;
}

Committer::~Committer() {
    stop();
}

void Committer::start() {
    timer_ = loop::Timer::create(loop_, [this] {
        refresh_space();
        maybe_probe();
        maybe_refill();  // e.g. started on a full spool: reserve once space is back
    });
    timer_->start(0, 1000);
    timer_->unref();
}

void Committer::stop() {
    stopped_ = true;
    timer_.reset();
}

spool::IoStatus Committer::next_mid(spool::Mid* mid) {
    spool::IoStatus st = spool_.mids->next(*mid);
    maybe_refill();
    return st;
}

void Committer::maybe_refill() {
    if (refilling_ || stopped_ || !spool_.mids->needs_refill()) return;
    spool::MidAllocator* mids = spool_.mids.get();
    run_once(
        refilling_, [mids] { return mids->refill(); },
        [this](const spool::IoStatus& st) {
            if (st.ok() && !mid_reserve_ok_)
                spdlog::info("spool: MID reservation written, accepting mail again");
            else if (!st.ok() && mid_reserve_ok_)
                spdlog::error(
                    "spool: cannot reserve MIDs, MAIL gets 451 4.3.0 once the reservation "
                    "is used up: {}",
                    st.reason());
            mid_reserve_ok_ = st.ok();
        });
}

void Committer::run_once(bool& busy, std::function<spool::IoStatus()> work,
                         std::function<void(const spool::IoStatus&)> done) {
    busy = true;
    auto status = std::make_shared<spool::IoStatus>();
    loop::queue_work(
        loop_, [work = std::move(work), status] { *status = work(); },
        [&busy, done = std::move(done), status] {
            busy = false;
            done(*status);
        });
}

smtp::SpoolAdmit Committer::admit(uint64_t declared_size) const {
    if (!spool_.store->healthy()) return smtp::SpoolAdmit::kUnavailable;
    if (!space_->ok) return smtp::SpoolAdmit::kInsufficientStorage;
    // Answer at MAIL, not after DATA, when no MID can be handed out (reservation not durable).
    if (!spool_.mids->available())
        return spool_.mids->last_refill_error().error_class() == spool::ErrorClass::kNoSpace
                   ? smtp::SpoolAdmit::kInsufficientStorage
                   : smtp::SpoolAdmit::kTemporaryFailure;
    // The cached check covers 1.5 × max size; a declared size is never above max size here
    // (the FSM refused it with 552 first).
    (void)declared_size;
    return smtp::SpoolAdmit::kOk;
}

void Committer::commit(spool::Message message, Done done) {
    waiting_->messages.push_back({std::move(message), {}});
    waiting_->done.push_back(std::move(done));
    flush();
}

void Committer::flush() {
    // Up to commit_slots() batches run at once on the thread pool (one file per message: their
    // fsyncs overlap; one segment: a single writer), and what arrives meanwhile waits to go
    // out together with the next free slot.
    const size_t max_in_flight = spool_.store->commit_slots();
    while (!waiting_->messages.empty() && in_flight_ < max_in_flight) {
        size_t slots = max_in_flight - in_flight_;
        size_t total = waiting_->messages.size();
        size_t take = (total + slots - 1) / slots;
        auto batch = std::make_shared<Batch>();
        if (take >= total) {
            batch = std::shared_ptr<Batch>(std::move(waiting_));
            waiting_ = std::make_unique<Batch>();
        } else {
            auto& msgs = waiting_->messages;
            auto& dones = waiting_->done;
            batch->messages.assign(
                std::make_move_iterator(msgs.begin()),
                std::make_move_iterator(msgs.begin() + static_cast<std::ptrdiff_t>(take)));
            batch->done.assign(
                std::make_move_iterator(dones.begin()),
                std::make_move_iterator(dones.begin() + static_cast<std::ptrdiff_t>(take)));
            msgs.erase(msgs.begin(), msgs.begin() + static_cast<std::ptrdiff_t>(take));
            dones.erase(dones.begin(), dones.begin() + static_cast<std::ptrdiff_t>(take));
        }
        start_batch(std::move(batch));
    }
}

void Committer::start_batch(std::shared_ptr<Batch> batch) {
    ++in_flight_;
    messages_in_flight_ += batch->messages.size();
    ++stats_.batches;
    stats_.messages += batch->messages.size();
    stats_.largest_batch = std::max<uint64_t>(stats_.largest_batch, batch->messages.size());
    spool::Store* store = spool_.store.get();
    loop::queue_work(
        loop_, [store, batch] { store->commit_batch(batch->messages); },
        [this, batch] {
            --in_flight_;
            messages_in_flight_ -= batch->messages.size();
            bool was_healthy = spool_.store->healthy();
            for (size_t i = 0; i < batch->messages.size(); ++i) {
                const spool::IoStatus& result = batch->messages[i].result;
                if (!result.ok())
                    spdlog::error("spool: commit of MID {} failed: {}",
                                  batch->messages[i].message.envelope.mid, result.reason());
                else if (spool_.recent)  // before done: delivery may ask for it at once
                    spool_.recent->put(std::move(batch->messages[i].message));
                batch->done[i](result);
            }
            if (!was_healthy)
                spdlog::error(
                    "spool: unhealthy after an fsync failure; refusing new sessions until a "
                    "probe write succeeds");
            flush();
        });
}

void Committer::refresh_space() {
    if (space_checking_ || stopped_) return;
    space_checking_ = true;
    auto result = std::make_shared<spool::SpaceCheck>();
    spool::Store* store = spool_.store.get();
    uint64_t max_size = max_message_size_;
    loop::queue_work(
        loop_, [store, result, max_size] { *result = store->space_ok(max_size); },
        [this, result] {
            space_checking_ = false;
            if (space_->ok && !result->ok)
                spdlog::warn("spool: low on space, new messages get 452 4.3.1: {}", result->reason);
            else if (!space_->ok && result->ok)
                spdlog::info("spool: free space recovered");
            space_ = result;
            if (on_space_) on_space_(*result);
        });
}

void Committer::maybe_probe() {
    if (probing_ || stopped_ || spool_.store->healthy()) return;
    spool::Store* store = spool_.store.get();
    run_once(
        probing_, [store] { return store->probe(); },
        [](const spool::IoStatus& st) {
            if (st.ok()) spdlog::info("spool: probe write succeeded, accepting mail again");
        });
}

}  // namespace esad::inject
