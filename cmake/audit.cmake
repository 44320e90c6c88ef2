# Panel audits (issue 5): the sections of `phasemap_audit` over src/stats (pure: no DuckDB, no llama.cpp; the only
# file it reads is a hypotheses TOML, in src/audit/hypotheses_toml.cpp), the `phasemap audit` verb
# (src/cli/cmd_audit.cpp, globbed into the CLI) and tests/audit.
find_package(Boost REQUIRED)
find_package(tomlplusplus QUIET)
if(TARGET tomlplusplus::tomlplusplus)
  set(PM_TOMLPP tomlplusplus::tomlplusplus)
else()
  pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
  set(PM_TOMLPP PkgConfig::TOMLPP)
endif()

file(GLOB PM_AUDIT_SRC CONFIGURE_DEPENDS src/audit/*.cpp)
add_library(phasemap_audit STATIC ${PM_AUDIT_SRC})
target_include_directories(phasemap_audit PUBLIC include)
target_link_libraries(phasemap_audit
  PUBLIC phasemap_stats phasemap_metrics Eigen3::Eigen Boost::boost nlohmann_json::nlohmann_json
  PRIVATE fmt::fmt ${PM_TOMLPP})

target_link_libraries(phasemap PRIVATE phasemap_audit)
pm_test(audit phasemap_audit)
