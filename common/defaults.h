// Embedded defaults shared by esad and esactl, so both agree on where the daemon lives
// when no configuration file is given (the README's quick start runs this way).
#pragma once

namespace esad {

// Relative to the daemon's working directory: `var/` in the checkout for the quick start.
inline constexpr const char* kDefaultStateDir = "var";
// The control socket lives in its own 0750 directory under the state dir.
inline constexpr const char* kDefaultControlSocket = "var/run/esad.sock";
inline constexpr const char* kDefaultListenAddress = "127.0.0.1:2525";
// Environment variable that overrides esactl's default socket path.
inline constexpr const char* kCtlSocketEnv = "ESACTL_SOCKET";

}  // namespace esad
