// Test helper: lists the messages in a spool directory as JSON lines, one per queue file:
//   {"mid":N,"sender":"...","recipients":["..."],"message_id":"...","size":N}
// or {"file":"...","error":"..."} for a file that does not decode. Usage: spool_dump STATE_DIR
#include <dirent.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "daemon/smtp/server_fsm.h"
#include "daemon/spool/record_codec.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: spool_dump STATE_DIR\n";
        return 2;
    }
    std::string dir = std::string(argv[1]) + "/spool/queue";
    DIR* d = opendir(dir.c_str());
    if (!d) {
        std::cerr << "cannot open " << dir << "\n";
        return 1;
    }
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        std::ifstream in(dir + "/" + name, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        auto r = esad::spool::decode(ss.str());
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
    closedir(d);
    return 0;
}
