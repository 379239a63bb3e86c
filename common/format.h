// Formatting helpers for the ESA vocabulary shared by esad and esactl.
//   esa_time(t)        "Thu Aug 13 14:29:42 2020 EDT" (command output: ctime + zone, local time)
//   esa_log_time(t)    "Wed Sep  6 13:13:16 2023"     (log lines: ctime without zone)
//   thousands(n)       "182,000"
//   human_duration(s)  "3d 4h 5m 6s"
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

namespace esad {

std::string esa_time(std::time_t t);
std::string esa_log_time(std::time_t t);
std::string thousands(uint64_t n);
std::string human_duration(uint64_t seconds);

}  // namespace esad
