// Fuzz target: the TOML configuration loader (common/config.*).
// Properties: any text either loads or yields errors - never an assertion, exception or
// UB; every error names a line (toml++ syntax errors included) or a key.
#include <cstdlib>
#include <string>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const esad::ConfigResult r = esad::load_config_string(text, "fuzz.toml");
    if (r.ok() != r.errors.empty()) abort();
    for (const esad::ConfigError& e : r.errors) {
        if (e.message.empty()) abort();
        if (e.key.empty() && e.line == 0) abort();
        (void)e.to_string("fuzz.toml");
    }
    if (r.ok()) (void)esad::restart_only_changes(esad::default_config(), *r.config);
    (void)esad::parse_duration(text);
    return 0;
}
