// The text layouts of esactl's one-shot commands: each takes the daemon's reply `data` (the
// JSON that `--json` prints) and writes what the operator sees. Pure functions of their
// input (times print in the local zone, via esa_time), so tests/unit/test_renderers.cc can
// compare them with golden text. Layouts follow esa-reference §2–§5, §7.1; where the
// reference has no layout, esad's own is documented in README.md.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>

#include "common/payloads/queue.h"
#include "common/payloads/status.h"

namespace esad::ctl {

// cmd_status.cc
void render_status(std::ostream& out, const payloads::StatusReply& d);
void render_version(std::ostream& out, const payloads::VersionReply& d);
void render_resetcounters(std::ostream& out, const payloads::ResetCountersReply& d);
void render_reload(std::ostream& out, const payloads::ReloadReply& d);

// cmd_queue.cc
void render_tophosts(std::ostream& out, const payloads::TophostsReply& d);
void render_hoststatus(std::ostream& out, const payloads::HoststatusReply& d);
void render_delivernow(std::ostream& out, const payloads::DelivernowReply& d);
void render_suspenddel(std::ostream& out, const payloads::SuspendDelReply& d);  // and resumedel
void render_suspend(std::ostream& out, const payloads::SuspendReply& d);
void render_resume(std::ostream& out, const payloads::ResumeReply& d);
void render_workqueue(std::ostream& out, const payloads::WorkqueueReply& d);
void render_showrecipients(std::ostream& out, const payloads::ShowRecipientsReply& d);
void render_showmessage(std::ostream& out, const payloads::ShowMessageReply& d);
void render_removal(std::ostream& out, const payloads::RemovalReply& d);  // delete/bouncerecipients
void render_redirect(std::ostream& out, const payloads::RedirectReply& d);
void render_dig(std::ostream& out, const payloads::DigReply& d);

}  // namespace esad::ctl
