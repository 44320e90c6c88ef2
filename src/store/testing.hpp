// Test hooks of the results store: not part of the public API (include/phasemap/store/). Only the
// test suites include this (tests/store, tests/panel: CMake adds src/ to their include path);
// no module does.
#pragma once
#include <string>

#include "phasemap/store/store.hpp"

namespace phasemap::store {

// Writes one meta table row (`schema_version`, …) of the DB at `db`, opened for writing: what a
// test needs to fake a DB of another schema version. Throws StoreError as Store::open does.
void set_meta_for_test(const fs::path& db, const std::string& key, const std::string& value);

// Runs one SQL statement on the DB at `db`, opened for writing without any migration: what a test
// needs to fake a DB of an older layout (e.g. drop a column a later version added).
void exec_for_test(const fs::path& db, const std::string& sql);

}  // namespace phasemap::store
