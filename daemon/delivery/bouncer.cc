// bouncer — see bouncer.h.
#include "daemon/delivery/bouncer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/header_fields.h"
#include "common/idna.h"
#include "daemon/loop/work.h"
#include "daemon/queue/dsn.h"

namespace esad::delivery {

namespace {
constexpr uint64_t kPollMs = 50;
}  // namespace

Bouncer::Bouncer(Env env) : env_(std::move(env)) {
    timer_ = loop::Timer::create(env_.loop, [this] {
        armed_ = false;
        poll();
    });
    timer_->unref();  // held rounds are made again after a restart: never keep the loop up
}

Bouncer::~Bouncer() {
    timer_.reset();
}

void Bouncer::arm(uint64_t delay_ms) {
    if (armed_ || !timer_ || stopping_) return;
    armed_ = true;
    timer_->start(delay_ms);
}

void Bouncer::add(spool::Mid mid, std::vector<BounceInfo> rcpts) {
    book_.add(mid, std::move(rcpts), env_.now());
    arm(0);  // after the caller journaled the report: its recipients are no longer in flight
}

void Bouncer::delay_warning(spool::Mid mid, std::vector<BounceInfo> rcpts) {
    generate(mid, std::move(rcpts), true, [] {});
}

void Bouncer::poll() {
    for (auto& r : book_.due(env_.now(), env_.busy))
        send_round(std::move(r));
    if (book_.has_open()) arm(kPollMs);
}

void Bouncer::stop() {
    for (auto& r : book_.take_all())
        send_round(std::move(r));
    stopping_ = true;
    timer_.reset();
}

void Bouncer::send_round(BounceBook::Round round) {
    spool::Mid mid = round.mid;
    generate(mid, std::move(round.rcpts), false, [this, mid] {
        BounceBook::Round done = book_.complete(mid);
        std::vector<spool::Mid> removals;
        if (done.done) removals.push_back(mid);
        env_.release(std::move(done.finals), std::move(removals));
        if (!stopping_) poll();  // a later round of the same message may wait for this one
    });
}

void Bouncer::try_later(spool::Mid mid) {
    book_.retry(mid, env_.now());
    arm(kPollMs);
}

void Bouncer::generate(spool::Mid mid, std::vector<BounceInfo> rcpts, bool delay_warning,
                       std::function<void()> finished) {
    auto result = std::make_shared<spool::LoadResult>();
    spool::Store* store = env_.store;
    loop::queue_work(
        env_.loop, [store, mid, result] { *result = store->load_content(mid); },
        [this, mid, rcpts = std::move(rcpts), result, delay_warning,
         finished = std::move(finished)] {
            if (result->status != spool::LoadStatus::kOk) {
                // The file is held until this round completes: only damage gets here (the
                // delivery path quarantines a corrupt file); nothing more can be done.
                spdlog::warn("bounce for MID {} not generated: {}", mid, result->reason);
                finished();
                return;
            }
            const spool::Envelope& orig = result->message.envelope;
            std::string headers(header_section(result->message.content));
            if (!queue::should_send_dsn(orig.sender, headers)) {
                for (const auto& b : rcpts)
                    env_.log(
                        fmt::format("Double bounce: MID {} to RID {} - {} - no DSN for a "
                                    "message from the null sender or a bounce",
                                    mid, b.rid, b.status));
                finished();
                return;
            }
            queue::DsnInput in;
            in.reporting_mta = env_.helo_name();
            in.original_mid = mid;
            in.original_sender = orig.sender;
            in.arrival = static_cast<std::time_t>(orig.received_unix_ms / 1000);
            in.original_headers = headers;
            in.now = std::time(nullptr);
            in.boundary_seed = env_.random();
            in.delay_warning = delay_warning;
            in.utf8 = orig.smtputf8;  // RFC 6533: UTF-8 addresses stay UTF-8
            for (const auto& b : rcpts) {
                queue::DsnRecipient r;
                for (const auto& rc : orig.recipients)
                    if (rc.rid == b.rid) r.address = rc.address;
                r.action = delay_warning ? "delayed" : "failed";
                if (delay_warning && b.retry_until) r.will_retry_until = b.retry_until;
                r.status = b.status;
                r.remote_mta = b.remote_mta;
                r.diagnostic = b.diagnostic;
                r.last_attempt = in.now;
                in.recipients.push_back(r);
            }
            spool::Message dsn;
            spool::IoStatus st = env_.committer->next_mid(&dsn.envelope.mid);
            if (!st.ok()) {
                spdlog::error("bounce for MID {}: no MID: {}", mid, st.reason());
                if (!delay_warning) try_later(mid);
                return;
            }
            dsn.envelope.received_unix_ms = env_.wall_ms();
            dsn.envelope.sender = "";
            size_t at = orig.sender.rfind('@');
            std::string domain = at == std::string::npos ? "" : orig.sender.substr(at + 1);
            domain = to_a_label(domain).value_or(domain);  // the recipient host: A-label
            dsn.envelope.recipients.push_back({0, orig.sender, domain});
            dsn.envelope.client_ip = "127.0.0.1";
            dsn.envelope.client_helo = env_.helo_name();
            // A UTF-8 DSN travels as it came: SMTPUTF8 and 8BITMIME, never downgraded.
            dsn.envelope.smtputf8 = orig.smtputf8;
            dsn.envelope.body_type =
                orig.smtputf8 ? spool::BodyType::k8BitMime : spool::BodyType::k7Bit;
            dsn.content = queue::build_dsn(in);
            spool::Mid new_mid = dsn.envelope.mid;
            spool::Envelope env_copy = dsn.envelope;
            uint64_t size = dsn.content.size();
            env_.committer->commit(
                std::move(dsn), [this, mid, new_mid, env_copy, size, delay_warning,
                                 finished](const spool::IoStatus& cs) {
                    if (!cs.ok()) {
                        // Held: the failure stays unjournaled and is tried again later (or
                        // after a restart, when the recipients are retried).
                        spdlog::error("bounce for MID {} not queued: {}", mid, cs.reason());
                        if (!delay_warning) try_later(mid);
                        return;
                    }
                    env_.log(fmt::format("MID {} was generated for {} of MID {}", new_mid,
                                         delay_warning ? "delay warning" : "bounce", mid));
                    env_.log(fmt::format("MID {} queued for delivery", new_mid));
                    env_.queued(env_copy, size, delay_warning);
                    finished();
                });
        });
}

}  // namespace esad::delivery
