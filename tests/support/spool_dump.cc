// Test helper: lists the messages in a spool directory as JSON lines, one per queue file
// (either file layout: queue/<MID> and queue/<xx>/<MID>) and one per live segment record
// (segments/<seq>.seg: not tombstoned, newest copy, not every recipient final in the journal —
// a removal is lazy there, so the journal says what is done) and one per RocksDB value
// (rocksdb/, same journal rule; only in builds with RocksDB):
//   {"mid":N,"sender":"...","recipients":["..."],"message_id":"...","size":N}
// or {"file":"...","error":"..."} for a file that does not decode. Usage: spool_dump STATE_DIR
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/smtp/server_fsm.h"
#include "daemon/spool/journal.h"
#include "daemon/spool/record_codec.h"
#include "daemon/spool/segment_store.h"
#if ESAD_HAVE_ROCKSDB
#include "daemon/spool/rocks_store.h"
#endif

namespace {

void print(const esad::spool::DecodeResult& r, const std::string& name) {
    nlohmann::json j;
    if (r.status != esad::spool::DecodeStatus::kOk) {
        j = {{"file", name}, {"error", r.reason}};
    } else {
        const auto& env = r.message.envelope;
        nlohmann::json rcpts = nlohmann::json::array();
        for (const auto& rc : env.recipients)
            rcpts.push_back(rc.address);
        auto id = esad::smtp::find_message_id(r.message.content);
        j = {{"mid", env.mid},
             {"sender", env.sender},
             {"recipients", rcpts},
             {"message_id", id ? *id : ""},
             {"size", r.message.content.size()},
             {"received", esad::smtp::count_received_headers(r.message.content)}};
    }
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: spool_dump STATE_DIR\n";
        return 2;
    }
    const std::string queue = std::string(argv[1]) + "/spool/queue";
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& e : std::filesystem::recursive_directory_iterator(queue, ec)) {
        if (e.is_regular_file() && !e.is_symlink()) files.push_back(e.path().string());
    }
    if (ec) {
        std::cerr << "cannot open " << queue << "\n";
        return 1;
    }
    for (const std::string& path : files)
        print(esad::spool::decode(slurp(path)), std::filesystem::path(path).filename().string());

    const std::string spool = std::string(argv[1]) + "/spool";
    std::set<std::pair<esad::spool::Mid, std::uint32_t>> finals;
    for (const auto& r : esad::spool::parse_journal(slurp(spool + "/journal")).records)
        finals.emplace(r.mid, r.rid);
    auto print_live = [&](esad::spool::Mid mid, std::string_view bytes) {
        auto r = esad::spool::decode(bytes);
        if (r.status == esad::spool::DecodeStatus::kOk) {
            bool live = false;
            for (const auto& rc : r.message.envelope.recipients)
                live = live || finals.count({mid, rc.rid}) == 0;
            if (!live) return;
        }
        print(r, esad::spool::mid_name(mid));
    };
    esad::spool::SegmentStore::read_records(spool, print_live);
#if ESAD_HAVE_ROCKSDB
    if (int err = esad::spool::RocksStore::read_records(spool, print_live);
        err != 0 && err != ENOENT) {
        std::cerr << "cannot read " << spool << "/rocksdb: " << std::strerror(err) << "\n";
        return 1;
    }
#endif
    return 0;
}
