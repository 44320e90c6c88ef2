# store: the results DB (DuckDB C API; src/store is the only code that includes duckdb.h).
set(PHASEMAP_DUCKDB_INCLUDE "" CACHE PATH "directory holding duckdb.h (scripts/deps.sh)")
set(PHASEMAP_DUCKDB_LIB "" CACHE FILEPATH "libduckdb.so (scripts/deps.sh)")
if(NOT PHASEMAP_DUCKDB_INCLUDE OR NOT PHASEMAP_DUCKDB_LIB)
  message(FATAL_ERROR "PHASEMAP_DUCKDB_INCLUDE / PHASEMAP_DUCKDB_LIB not set: build through `make` (scripts/deps.sh fetches DuckDB)")
endif()
add_library(pm_duckdb SHARED IMPORTED)
set_target_properties(pm_duckdb PROPERTIES IMPORTED_LOCATION "${PHASEMAP_DUCKDB_LIB}")
get_filename_component(PM_DUCKDB_LIBDIR "${PHASEMAP_DUCKDB_LIB}" DIRECTORY)
list(APPEND CMAKE_BUILD_RPATH "${PM_DUCKDB_LIBDIR}")
list(APPEND CMAKE_INSTALL_RPATH "${PM_DUCKDB_LIBDIR}")
# Executables defined before this file keep their RPATH from the properties set now.
set_property(TARGET phasemap APPEND PROPERTY BUILD_RPATH "${PM_DUCKDB_LIBDIR}")

file(GLOB PM_STORE_SRC CONFIGURE_DEPENDS src/store/*.cpp)
add_library(phasemap_store STATIC ${PM_STORE_SRC})
target_include_directories(phasemap_store PUBLIC include)
target_include_directories(phasemap_store SYSTEM PRIVATE "${PHASEMAP_DUCKDB_INCLUDE}")
target_link_libraries(phasemap_store PUBLIC phasemap_metrics nlohmann_json::nlohmann_json PRIVATE pm_duckdb fmt::fmt)
target_compile_definitions(phasemap_store PRIVATE PHASEMAP_VERSION="${PROJECT_VERSION}")
target_link_libraries(phasemap PRIVATE phasemap_store)

pm_test(store phasemap_store phasemap_metrics)
# The store's test hooks (src/store/testing.hpp) are private: the suites that use them see src/.
if(TARGET test_store)
  target_include_directories(test_store PRIVATE ${CMAKE_SOURCE_DIR}/src)
endif()

# Crash points (include/phasemap/io/crash_point.hpp, docs/hardening.md): PHASEMAP_CRASH_AT=<point>
# kills the process at a named commit point. On by default, for the crash tests; off, every
# crash_point() is an empty inline function. Every target that includes the header gets it.
option(PHASEMAP_CRASH_POINTS "Fault injection at the results DB's commit points (PHASEMAP_CRASH_AT)" ON)
if(PHASEMAP_CRASH_POINTS)
  target_compile_definitions(phasemap_store PRIVATE PHASEMAP_CRASH_POINTS)
endif()
