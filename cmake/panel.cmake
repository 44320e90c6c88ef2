# panel: manifest (toml++), built-in prompt panels, the grid's run identity, the run analysis (the
# batched resumable runner that drives them is plan's: src/plan/panel_run.cpp); CLI verbs
# panel/export/merge/quantize live in src/cli (cmd_panel.cpp, cmd_export.cpp, cmd_merge.cpp, cmd_quantize.cpp).
pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)

# Built-in panels: src/panel/panels/<name>.csv compiled in as string constants.
include(${CMAKE_SOURCE_DIR}/cmake/panel_data.cmake)
pm_write_panel_data(${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/generated)

file(GLOB PM_PANEL_SRC CONFIGURE_DEPENDS src/panel/*.cpp)
add_library(phasemap_panel STATIC ${PM_PANEL_SRC})
target_include_directories(phasemap_panel PUBLIC include PRIVATE ${CMAKE_BINARY_DIR}/generated)
target_link_libraries(phasemap_panel PUBLIC phasemap_store phasemap_capture phasemap_metrics phasemap_io
  PRIVATE phasemap_gguf PkgConfig::TOMLPP fmt::fmt nlohmann_json::nlohmann_json OpenSSL::Crypto)
target_link_libraries(phasemap PRIVATE phasemap_panel)

pm_test(panel phasemap_panel phasemap_store phasemap_capture phasemap_metrics phasemap_io phasemap_modelgen)
if(TARGET test_panel)
  add_dependencies(test_panel phasemap)
  target_compile_definitions(test_panel PRIVATE PHASEMAP_DUCKDB_LIB_PATH="${PHASEMAP_DUCKDB_LIB}")
  target_include_directories(test_panel PRIVATE ${CMAKE_SOURCE_DIR}/src)  # src/store/testing.hpp
endif()
# Benchmarks are defined after the module files: link bench_panel at the end of configuration.
function(pm_panel_link_bench)
  if(TARGET bench_panel)
    target_link_libraries(bench_panel PRIVATE phasemap_plan phasemap_panel phasemap_store)
  endif()
endfunction()
cmake_language(DEFER CALL pm_panel_link_bench)

# Real Slurm array run on localhost (scripts/slurm-test.sh); 77 = slurm cannot be installed.
find_program(PM_BASH bash)
add_test(NAME panel.slurm COMMAND ${PM_BASH} ${CMAKE_SOURCE_DIR}/scripts/slurm-test.sh $<TARGET_FILE:phasemap>
  ${CMAKE_SOURCE_DIR}/../shared/models/stories260K.gguf)
set_tests_properties(panel.slurm PROPERTIES TIMEOUT 420 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE ENVIRONMENT "${PM_TEST_ENV}")
