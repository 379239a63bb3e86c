// Catch2 v2 entry point shared by every unit test file in tests/unit/.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
